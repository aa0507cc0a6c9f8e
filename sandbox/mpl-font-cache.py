"""Builds matplotlib's font cache at install time, for the jails to copy (see src/runner.py,
prepare_matplotlib): without it, the first `import matplotlib.pyplot` in every jail spends
seconds finding and reading fonts, and warns about it.

    python3 sandbox/mpl-font-cache.py JAIL_PREFIX

Run with the sandbox's Python. JAIL_PREFIX is where that Python's prefix (sys.prefix) is seen
inside a jail: /opt/venv for a virtualenv (src/sandbox.rs mounts it there), sys.prefix itself
for a Python under /usr. The cache is written read-only to <sys.prefix>/share/python-executor/
matplotlib/. matplotlib stores its own fonts' paths relative to its data directory; any other
path is stored absolute, so each is rewritten to the path a jail sees, and fonts a jail cannot
see (outside /usr and the prefix) are left out.
"""

import json
import os
import sys
import tempfile


def main():
    jail_prefix = sys.argv[1].rstrip("/")
    prefix = os.path.realpath(sys.prefix)
    target = os.path.join(sys.prefix, "share", "python-executor", "matplotlib")
    with tempfile.TemporaryDirectory() as scratch:
        # Only the system's fonts and matplotlib's own: no user font directory of the builder.
        for name in ("MPLCONFIGDIR", "HOME", "XDG_DATA_HOME", "XDG_CACHE_HOME", "XDG_CONFIG_HOME"):
            os.environ[name] = scratch
        import matplotlib.font_manager as font_manager

        name = "fontlist-v%s.json" % font_manager.FontManager.__version__
        with open(os.path.join(scratch, name)) as f:
            cache = json.load(f)
    kept = dropped = 0
    for key in ("ttflist", "afmlist"):
        entries = []
        for entry in cache.get(key, []):
            fname = entry.get("fname", "")
            if os.path.isabs(fname):
                real = os.path.realpath(fname)
                if real == prefix or real.startswith(prefix + "/"):
                    entry["fname"] = jail_prefix + real[len(prefix):]
                elif not real.startswith("/usr/"):
                    dropped += 1
                    continue
                else:
                    entry["fname"] = real
            entries.append(entry)
            kept += 1
        cache[key] = entries
    os.makedirs(target, exist_ok=True)
    path = os.path.join(target, name)
    with open(path + ".tmp", "w") as f:
        json.dump(cache, f, indent=1)
    os.chmod(path + ".tmp", 0o444)
    os.replace(path + ".tmp", path)
    for old in os.listdir(target):
        if old.startswith("fontlist-") and old != name:
            os.remove(os.path.join(target, old))
    print("mpl-font-cache: %s (%d fonts, %d outside the jail's view left out)" % (path, kept, dropped), file=sys.stderr)


if __name__ == "__main__":
    main()
