import json
import sys


def main():
    return {"argv": len(sys.argv) >= 0}


if __name__ == "__main__":
    print(json.dumps(main()))
