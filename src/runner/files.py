"""The runner's data in and out: the working directory and the files written into it before
the script runs, and the files `collect` brings back after it. A part of the runner: see the
docstring of src/runner.py."""

import os

# Bounds on a `collect` walk: directory entries looked at, directory depth searched, and the
# number of files taken when the request does not say.
MAX_COLLECT_ENTRIES = 20000
MAX_COLLECT_DEPTH = 32
DEFAULT_MAX_FILES = 100
# Bytes counted per collected file on top of its name and base64 (the JSON around them).
FILE_ENTRY_OVERHEAD = 64


# ---- Data in: the working directory and its files ----


def check_path(path, what="file"):
    """The components of a relative `/`-separated path, or Refused naming it."""
    if not isinstance(path, str) or not path:
        raise Refused("invalid_request", "a %s path must be a non-empty string" % what)
    parts = path.split("/")
    for part in parts:
        if part in ("", ".", "..") or "\0" in part:
            raise Refused(
                "invalid_request",
                "%s path %s must be relative, with no empty, '.' or '..' component and no NUL"
                % (what, shown(path)),
            )
    return parts


def shown(text):
    """A name as it appears in an error message: quoted, and short."""
    text = repr(text)
    return text if len(text) <= 200 else text[:200] + "..."


def make_workdir(parent=None):
    """A fresh private (0700) directory for one execution: `(path, fd)`."""
    parent = parent or WORK_PARENT
    path = os.path.join(parent, "run-" + os.urandom(8).hex())
    os.mkdir(path, 0o700)
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    return path, fd


def open_dir(name, dir_fd):
    return os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)


def write_files(root_fd, files):
    """Writes the request's files under `root_fd`: each path re-checked, subdirectories made,
    never through a symlink, never over an existing file."""
    import binascii

    if not isinstance(files, list):
        raise Refused("invalid_request", "files must be a list")
    for entry in files:
        if not isinstance(entry, dict):
            raise Refused("invalid_request", "each file must be an object")
        path = entry.get("path")
        parts = check_path(path)
        try:
            if "text" in entry and isinstance(entry["text"], str):
                data = entry["text"].encode("utf-8")
            elif "base64" in entry and isinstance(entry["base64"], str):
                # As the service checked it: ASCII whitespace ignored, padding optional.
                digits = entry["base64"].encode("ascii").translate(None, b" \t\r\n").rstrip(b"=")
                data = binascii.a2b_base64(digits + b"=" * (-len(digits) % 4), strict_mode=True)
            else:
                raise Refused("invalid_request", "file %s has neither text nor base64" % shown(path))
        except (UnicodeError, binascii.Error, ValueError) as exc:
            raise Refused("invalid_request", "file %s: bad content (%s)" % (shown(path), exc)) from None
        # One directory open at a time: a path hundreds of levels deep must not run out of fds.
        dir_fd = root_fd
        try:
            for part in parts[:-1]:
                try:
                    os.mkdir(part, 0o700, dir_fd=dir_fd)
                except FileExistsError:
                    pass
                parent_fd, dir_fd = dir_fd, open_dir(part, dir_fd)
                if parent_fd != root_fd:
                    os.close(parent_fd)
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
            fd = os.open(parts[-1], flags, 0o600, dir_fd=dir_fd)
            try:
                write_all(fd, data)
            finally:
                os.close(fd)
        except OSError as exc:
            raise Refused("invalid_request", "file %s cannot be written: %s" % (shown(path), exc.strerror)) from None
        finally:
            if dir_fd != root_fd:
                os.close(dir_fd)


# ---- Data out: collect ----


def compile_patterns(patterns):
    """Each pattern as its list of components; Refused for anything that could leave the
    working directory (absolute, `..`) or is malformed."""
    if not isinstance(patterns, list):
        raise Refused("invalid_request", "collect must be a list of patterns")
    return [tuple(check_path(p, "collect pattern")) for p in patterns]


def closure(states, patterns):
    """Adds, for every state sitting on a `**`, the state past it (`**` may match nothing)."""
    todo = list(states)
    seen = set(states)
    while todo:
        p, i = todo.pop()
        if i < len(patterns[p]) and patterns[p][i] == "**" and (p, i + 1) not in seen:
            seen.add((p, i + 1))
            todo.append((p, i + 1))
    return seen


def step(states, patterns, name, fnmatchcase):
    """For one directory entry: (does it match as a file, the states to descend with)."""
    is_match = False
    descend = set()
    for p, i in states:
        pattern = patterns[p]
        if i >= len(pattern):
            continue
        part = pattern[i]
        if part == "**":
            descend.add((p, i))
            if i + 1 == len(pattern):
                is_match = True
        elif fnmatchcase(name, part):
            if i + 1 == len(pattern):
                is_match = True
            else:
                descend.add((p, i + 1))
    return is_match, closure(descend, patterns) if descend else descend


class Collector:
    """Finds and reads the files `collect` asks for, under a directory fd, bounded throughout.

    Runs in the runner (PID 1) after every other process in the jail is dead, so nothing moves
    under it; it still never follows a symlink (scandir without following, every open with
    O_NOFOLLOW relative to its directory's fd) and reads regular files only (a FIFO or a device
    is skipped: opened O_NONBLOCK, checked with fstat, never read). A name that is not valid
    UTF-8 cannot be a JSON key faithfully: such files and directories are skipped."""

    def __init__(self, patterns, max_files, budget, max_entries=MAX_COLLECT_ENTRIES, max_depth=MAX_COLLECT_DEPTH):
        self.patterns = compile_patterns(patterns)
        self.max_files = max_files
        self.budget = budget
        self.max_entries = max_entries
        self.max_depth = max_depth
        self.entries = 0
        self.matches = []
        self.walk_cut = False
        self.too_deep = False

    def find(self, root_fd):
        from fnmatch import fnmatchcase

        if not self.patterns:
            return
        start = closure({(p, 0) for p in range(len(self.patterns))}, self.patterns)
        self._walk(root_fd, (), start, fnmatchcase)

    def _walk(self, dir_fd, prefix, states, fnmatchcase):
        subdirs = []
        try:
            listing = os.scandir(dir_fd)
        except OSError:
            return
        with listing:
            for entry in listing:
                self.entries += 1
                if self.entries > self.max_entries:
                    self.walk_cut = True
                    return
                name = entry.name
                try:
                    name.encode("utf-8")
                except UnicodeError:
                    continue
                is_match, descend = step(states, self.patterns, name, fnmatchcase)
                try:
                    if is_match and entry.is_file(follow_symlinks=False):
                        self.matches.append(prefix + (name,))
                    elif descend and entry.is_dir(follow_symlinks=False):
                        subdirs.append((name, descend))
                except OSError:
                    continue
        if subdirs and len(prefix) >= self.max_depth:
            # Directories a pattern could match below, past the depth searched: refused, not
            # silently left out.
            self.too_deep = self.walk_cut = True
            return
        for name, descend in sorted(subdirs):
            try:
                fd = open_dir(name, dir_fd)
            except OSError:
                continue
            try:
                self._walk(fd, prefix + (name,), descend, fnmatchcase)
            finally:
                os.close(fd)
            if self.walk_cut:
                return

    def read(self, root_fd, used):
        """The `files` object's JSON text; `used` bytes of the budget are taken already.
        Raises Refused(result_too_large) past max_files or the budget."""
        import binascii
        import json
        import mimetypes

        if self.walk_cut and len(self.matches) > self.max_files:
            raise Refused(
                "result_too_large",
                "more than %d files match collect (%d found before the search stopped), over the limit of %d"
                % (self.max_files, len(self.matches), self.max_files),
            )
        if self.too_deep:
            raise Refused(
                "result_too_large",
                "collect would search directories deeper than %d levels: narrow the patterns"
                % self.max_depth,
            )
        if self.walk_cut:
            raise Refused(
                "result_too_large",
                "collect looked at more than %d directory entries without finishing: "
                "narrow the patterns" % self.max_entries,
            )
        if len(self.matches) > self.max_files:
            raise Refused(
                "result_too_large",
                "%d files match collect, over the limit of %d" % (len(self.matches), self.max_files),
            )
        remaining = self.budget - used - 2
        parts = []
        for path in sorted(set(self.matches)):
            name = "/".join(path)
            key = json.dumps(name)
            media_type = media_type_of(path[-1], mimetypes)
            room = remaining - len(key) - len(media_type) - FILE_ENTRY_OVERHEAD
            cap = max(room, 0) // 4 * 3
            data = read_regular(root_fd, path, cap + 1)
            if data is None:
                continue
            if len(data) > cap:
                raise Refused("result_too_large", too_large_message(self.budget, name))
            entry = '%s:{"base64":"%s","size":%d,"media_type":%s}' % (
                key,
                binascii.b2a_base64(data, newline=False).decode("ascii"),
                len(data),
                json.dumps(media_type),
            )
            remaining -= len(entry) + 1
            if remaining < 0:
                raise Refused("result_too_large", too_large_message(self.budget, name))
            parts.append(entry)
        return "{" + ",".join(parts) + "}"


def media_type_of(name, mimetypes):
    """From the name's extension, by Python's built-in table only (the same in every jail and
    on every host); "./" keeps a name like `data:text` from being read as a data: URL."""
    global MIME_TYPES
    if MIME_TYPES is None:
        MIME_TYPES = mimetypes.MimeTypes()
    media_type, encoding = MIME_TYPES.guess_type("./" + name, strict=False)
    if encoding is not None:
        # `data.csv.gz` is gzip bytes, not CSV text.
        return COMPRESSED_TYPES.get(encoding, "application/octet-stream")
    return media_type or "application/octet-stream"


MIME_TYPES = None
# mimetypes' encodings (`.gz`, `.tgz`, `.bz2`, ...) as media types of their own.
COMPRESSED_TYPES = {
    "gzip": "application/gzip",
    "bzip2": "application/x-bzip2",
    "xz": "application/x-xz",
    "compress": "application/x-compress",
    "br": "application/x-brotli",
}


def too_large_message(limit, name=None):
    what = "the result with the collected files" if name is not None else "the result"
    return "%s is over the %d-byte limit" % (what, limit)


def read_regular(root_fd, path, cap):
    """Up to `cap` bytes of the regular file at `path` (components) under `root_fd`; None if
    it is not a regular file reached without symlinks."""
    import stat

    fds = []
    try:
        dir_fd = root_fd
        for part in path[:-1]:
            dir_fd = open_dir(part, dir_fd)
            fds.append(dir_fd)
        flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
        fd = os.open(path[-1], flags, dir_fd=dir_fd)
    except OSError:
        return None
    finally:
        for each in fds:
            os.close(each)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        chunks = []
        size = 0
        while size < cap:
            chunk = os.read(fd, min(cap - size, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        return b"".join(chunks)
    except OSError:
        return None
    finally:
        os.close(fd)
