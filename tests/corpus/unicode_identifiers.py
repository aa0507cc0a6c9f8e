# -*- coding: utf-8 -*-
π = 3.14159
größe = 2
naïve = "café"
日本 = "にほん"


def main():
    return {"area": π * größe ** 2, "text": naïve + 日本}
