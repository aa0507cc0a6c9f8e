import asyncio
from contextlib import asynccontextmanager


async def ticker(n):
    for i in range(n):
        yield i
        await asyncio.sleep(0)


@asynccontextmanager
async def session():
    yield "s"


async def main():
    async with session() as s:
        values = [v async for v in ticker(3)]
        async for v in ticker(2):
            values.append(v)
    result = await asyncio.gather(*(asyncio.sleep(0, i) for i in range(3)))
    return [s, values, result]
