"""main()'s value as JSON: numpy values made plain, pandas objects refused with a hint, lone
surrogates made U+FFFD. A part of the runner: see the docstring of src/runner.py."""

import sys


class NotJson(TypeError):
    """Why a value returned by main has no JSON form, already worded for the user."""


def to_json(value):
    """`default=` for json.dumps: numpy scalars and arrays become plain Python values (numpy is
    only looked at if the script imported it); a pandas DataFrame or Series gets a hint."""
    numpy = sys.modules.get("numpy")
    if numpy is not None:
        generic, ndarray = getattr(numpy, "generic", None), getattr(numpy, "ndarray", None)
        if isinstance(generic, type) and isinstance(value, generic):
            plain = value.item()
            # np.longdouble and friends have no Python equivalent (.item() returns them), and
            # datetime64, bytes_ or complex ones become Python values JSON has no form for
            # either: the error names the numpy type the script returned.
            if not isinstance(plain, (bool, int, float, str, type(None))) or isinstance(plain, generic):
                raise NotJson("main() returned a numpy %s, which has no JSON form" % type(value).__name__)
            return plain
        if isinstance(ndarray, type) and isinstance(value, ndarray):
            return value.tolist()
    pandas = sys.modules.get("pandas")
    if pandas is not None:
        for name, instead in (("DataFrame", ".to_dict() (or .to_dict('records'))"),
                              ("Series", ".to_dict() (or .tolist())")):
            cls = getattr(pandas, name, None)
            if isinstance(cls, type) and isinstance(value, cls):
                raise NotJson(
                    "main() returned a pandas %s, which is not JSON-serialisable: return its "
                    "%s instead" % (name, instead)
                )
    raise TypeError("Object of type %s is not JSON serializable" % type(value).__name__)


def result_json(dumps, value):
    """main()'s value as JSON text. json.dumps converts int, float, bool and None dict keys to
    strings itself but numpy's only through `default`, which it never calls for a key: on
    that refusal, numpy keys become the equal Python values and the value is dumped again.
    A string with a lone surrogate (a file name `os.fsdecode` made of undecodable bytes) has
    it as U+FFFD, as stdout and errors do: strict JSON parsers refuse a lone `\\udXXX`."""
    try:
        text = dumps(value, allow_nan=False, default=to_json)
    except TypeError as exc:
        numpy = sys.modules.get("numpy")
        if numpy is None or not str(exc).startswith("keys must be"):
            raise
        value = plain_keys(value, getattr(numpy, "generic", ()))
        text = dumps(value, allow_nan=False, default=to_json)
    # Only a string outside the BMP (written as a pair) or a surrogate is escaped so. What
    # `default` returns (an array's list) is made of strings too.
    if "\\ud" in text:
        text = dumps(without_surrogates(value), allow_nan=False,
                     default=lambda v: without_surrogates(to_json(v)))
    return text


def plain_keys(value, generic):
    """`value` with the numpy scalars among its dicts' keys made Python values (those that
    have an equal one JSON allows as a key)."""
    if isinstance(value, dict):
        def key(k):
            if isinstance(k, generic):
                plain = k.item()
                if isinstance(plain, (bool, int, float, str, type(None))) and not isinstance(plain, generic):
                    return plain
            return k
        return {key(k): plain_keys(v, generic) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain_keys(v, generic) for v in value]
    return value


def without_surrogates(value):
    """`value` with every lone surrogate in its strings made U+FFFD, as stdout's undecodable
    bytes are: an exception naming a file `os.fsdecode` read (`caf\udce9.csv`) is still an
    error the host can read, whose JSON parser refuses lone surrogates. A high surrogate
    followed by a low one stays: json.dumps writes the pair, which JSON reads as one character
    (`chr(0xD83D) + chr(0xDE00)` is 😀 to the client, as it is in `json.dumps`'s text)."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
            return value
        except UnicodeEncodeError:
            return paired_surrogates_only(value)
    if isinstance(value, dict):
        return {without_surrogates(k): without_surrogates(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [without_surrogates(v) for v in value]
    return value


def paired_surrogates_only(text):
    """`text` with each surrogate that is not half of a high-low pair made U+FFFD."""
    chars = list(text)
    paired = False  # chars[i - 1] was the high half of a pair
    for i, c in enumerate(chars):
        if paired:
            paired = False
        elif "\ud800" <= c <= "\udbff" and i + 1 < len(chars) and "\udc00" <= chars[i + 1] <= "\udfff":
            paired = True
        elif "\ud800" <= c <= "\udfff":
            chars[i] = "\ufffd"
    return "".join(chars)


