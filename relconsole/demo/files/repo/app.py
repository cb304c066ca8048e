"""The demo service: says which release it runs, then a heartbeat."""
import pathlib
import time

HERE = pathlib.Path(__file__).resolve().parent


def revision() -> str:
    path = HERE / "REVISION"
    return path.read_text().strip()[:12] if path.exists() else "unknown"


def greeting() -> str:
    return "hello from web"


if __name__ == "__main__":
    print(f"{greeting()} (revision {revision()})", flush=True)
    beat = 0
    while True:
        time.sleep(5)
        beat += 1
        print(f"heartbeat {beat}", flush=True)
