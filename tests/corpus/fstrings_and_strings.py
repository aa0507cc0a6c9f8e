name = "world"
width = 10
value = 3.14159
items = {"a": 1}


def main():
    parts = [
        f"hello {name}!",
        f"{name!r:>{width}}",
        f"{value:.2f} {value=} {value = :.1f}",
        f"{items['a']} {'nested' + f'{name}'}",
        f"{{braces}} {width:#x} {1_000_000:,}",
        rf"raw \d+ {name}",
        b"bytes \x00",
        "implicit" " concatenation",
        """triple
quoted""",
        u"unicode é",
        f"""{
            name
        }""",
        "%s and %d" % ("old", 2),
        "{} {}".format(1, 2),
    ]
    return len(parts)
