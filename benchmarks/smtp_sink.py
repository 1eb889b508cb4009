"""A lean SMTP sink for the notifier benchmark: accepts every mail and keeps only a count,
so the benchmark measures the notifier rather than a mail server's parsing. With
``--delay-ms`` it waits that long before each ``250`` after DATA, as a remote relay does.

``python -m benchmarks.smtp_sink --port P [--delay-ms MS]``; prints ``ready`` once it
listens and the number of mails accepted when it ends (SIGTERM).
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

GREETING = b"220 sink ESMTP\r\n"
EHLO = b"250-sink\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n"


class Sink:
    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.accepted = 0

    async def session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(GREETING)
        try:
            while line := await reader.readline():
                verb = line[:4].upper()
                if verb in (b"EHLO", b"HELO"):
                    writer.write(EHLO)
                elif verb == b"DATA":
                    writer.write(b"354 go ahead\r\n")
                    await writer.drain()
                    await reader.readuntil(b"\r\n.\r\n")
                    if self.delay:
                        await asyncio.sleep(self.delay)
                    self.accepted += 1
                    writer.write(b"250 2.0.0 accepted\r\n")
                elif verb == b"QUIT":
                    writer.write(b"221 bye\r\n")
                    break
                else:  # MAIL, RCPT, RSET, NOOP
                    writer.write(b"250 OK\r\n")
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass  # the client went away, or the sink is stopping
        finally:
            writer.close()


async def serve(port: int, delay: float) -> int:
    sink = Sink(delay)
    server = await asyncio.start_server(sink.session, "127.0.0.1", port, backlog=128)
    stopped = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stopped.set)
    loop.add_signal_handler(signal.SIGINT, stopped.set)
    print("ready", flush=True)
    async with server:
        await stopped.wait()
    return sink.accepted


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.smtp_sink")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--delay-ms", type=float, default=0.0)
    args = parser.parse_args(argv)
    accepted = asyncio.run(serve(args.port, args.delay_ms / 1000))
    print(accepted, flush=True)
    sys.exit(0)


if __name__ == "__main__":
    main()
