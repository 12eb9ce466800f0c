"""An SMTP server for benchmarks that records when each message arrived (aiosmtpd, in its own process).

    .venv/bin/python bench/smtp_recorder.py --port PORT --out FILE [--delay SECONDS]

Writes one line per message to FILE, flushed at once: `<time.time() when the DATA was complete> <recipient>`
(one line per envelope recipient), so another process on the same machine can compare arrival instants with
its own `time.time()`. `--delay` waits that long (asyncio, per connection) before answering 250, like a distant
server. Prints "ready" on stdout once it accepts connections. Stops on SIGTERM.
"""
import argparse
import asyncio
import signal
import sys
import threading
import time

from aiosmtpd.controller import Controller


class Recorder:
    def __init__(self, out, delay: float):
        self.out = out
        self.delay = delay
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):
        received_at = time.time()
        with self.lock:
            for recipient in envelope.rcpt_tos:
                self.out.write(f"{received_at:.6f} {recipient.lower()}\n")
            self.out.flush()
        if self.delay:
            await asyncio.sleep(self.delay)
        return "250 Message accepted for delivery"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--delay", type=float, default=0.0)
    args = parser.parse_args()
    with open(args.out, "a", encoding="ascii") as out:
        controller = Controller(Recorder(out, args.delay), hostname="127.0.0.1", port=args.port)
        controller.start()
        stopped = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stopped.set())
        print("ready", flush=True)
        stopped.wait()
        controller.stop()
    sys.exit(0)


if __name__ == "__main__":
    main()
