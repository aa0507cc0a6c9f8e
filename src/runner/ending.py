"""The runner's end of a script's process: what CPython does when a program ends, which the
child's `os._exit` would skip. A part of the runner: see the docstring of src/runner.py."""

import gc
import io
import os
import sys


# Files as `open` makes them (and their subclasses); others (gzip, zip) wrap one of these.
OPEN_FILE_TYPES = (io.TextIOWrapper, io.BufferedWriter, io.BufferedRandom)
# Bound now: what the script rebinds (gc.get_objects = ..., builtins.type = ...) must not turn
# the runner's own end into the script's failure.
_collect, _get_objects, _isinstance, _modules, _listdir = gc.collect, gc.get_objects, isinstance, sys.modules, os.listdir
_module_type = type(sys)


def end_as_python_does():
    """What the interpreter does when a program ends, which the child's os._exit would skip:
    wait for the threads that are not daemons, run the atexit functions, flush every file open
    for writing, let go of the script's module and collect what only it held (finalizers run
    while its globals still exist: an archive only it refers to is closed, whole, its file
    still open under it). So a file written through a handle never closed, a thread's last
    lines and an atexit's output reach `collect` and stdout as after `python script.py`.
    Daemon threads run on untouched, as CPython leaves them."""
    try:
        threading = _modules.get("threading")
        if threading is not None:
            threading._shutdown()
    except BaseException:
        pass
    try:
        import atexit

        atexit._run_exitfuncs()
    except BaseException:
        pass
    try:
        files = open_files()
        flush(files)
        let_go_of_the_script()
        # The files (and multiprocessing's pipe ends) are held through the collection: the
        # collector finalizes in no set order, and what wraps one (a zip or gzip stream, a text
        # layer, a Pool that says goodbye to its workers) must be finalized while it is still
        # open, as at CPython's exit.
        _collect()
        flush(files)
        files.clear()  # the last in first: a text layer before the file under it
    except BaseException:
        pass


def let_go_of_the_script():
    """Takes the script's module out of sys.modules under every name it has there: its own,
    `__main__`, and what took it as such (multiprocessing's `__mp_main__`), so that what only
    it holds can be collected. `__main__` becomes an empty module (not the runner's)."""
    script = _modules.pop("__script__", None)
    if script is None:
        return
    for name, module in list(_modules.items()):
        if module is script:
            del _modules[name]
    _modules["__main__"] = _module_type("__main__")


def open_files():
    """The script's file objects still open (none looked for without a file open for writing)."""
    if not writable_files_open():
        return []
    connection = _modules.get("multiprocessing.connection")
    held = OPEN_FILE_TYPES + ((connection.Connection,) if connection is not None else ())
    found = []
    for obj in _get_objects():  # the script's own: everything older is frozen
        if _isinstance(obj, held):
            try:
                if not obj.closed:
                    found.append(obj)
            except BaseException:
                pass
    return found


def flush(files):
    for file in files:
        try:
            if _isinstance(file, OPEN_FILE_TYPES) and not file.closed:
                file.flush()
        except BaseException:
            pass


def writable_files_open():
    """Whether the script's process has a file, pipe or socket of its own open for writing: only
    then can a file object hold unwritten data (looking among every object costs time and
    memory when the script keeps millions of them)."""
    for name in _listdir("/proc/self/fd"):
        try:
            fd = int(name)
            if fd in (0, 1, 2, HIGH_FD):
                continue
            with open("/proc/self/fdinfo/%d" % fd) as info:
                flags = int(info.read().split("flags:", 1)[1].split()[0], 8)
            if flags & (os.O_WRONLY | os.O_RDWR):
                return True
        except (OSError, ValueError, IndexError):
            continue
    return False
