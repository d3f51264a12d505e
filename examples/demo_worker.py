"""The demo's Python worker: `exclaim` adds excitement to the Rust worker's greeting."""

from conductor_worker import run, worker


@worker("exclaim", concurrency=4)
def exclaim(text: str) -> dict:
    return {"text": f"{text}, and Python!", "by": "python"}


if __name__ == "__main__":
    run(journal="off")
