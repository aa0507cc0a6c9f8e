import asyncio
import contextlib


class Resource:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


async def fail(n):
    raise ValueError(n)


async def gather():
    try:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(fail(1))
            tg.create_task(fail(2))
    except* ValueError as group:
        count = len(group.exceptions)
    except* (TypeError, KeyError):
        count = -1
    return count


def main():
    with (
        Resource() as a,
        Resource() as b,
        contextlib.suppress(KeyError),
    ):
        {}["missing"]
    try:
        raise ExceptionGroup("many", [ValueError(1), TypeError(2)])
    except* ValueError:
        pass
    except* TypeError:
        pass
    else:
        pass
    finally:
        pass
    return asyncio.run(gather())
