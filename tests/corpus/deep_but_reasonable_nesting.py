def main():
    value = ((((((((((((((((((((1))))))))))))))))))))
    nested = [[[[[[[[[[[[[[[[[[[[0]]]]]]]]]]]]]]]]]]]]
    if True:
        if True:
            if True:
                if True:
                    if True:
                        if True:
                            if True:
                                if True:
                                    return value + len(nested)
