"""Run the fake OpenAI, Anthropic and Gemini servers together, for trying the gateway without keys.

``python -m tests.fakes.all`` (or ``make fake-providers``) serves them on 127.0.0.1 ports 9990
(OpenAI: base URL ``http://127.0.0.1:9990/v1``), 9991 (Anthropic) and 9992 (Gemini) until
interrupted.
"""

from __future__ import annotations

import argparse
import threading

from .anthropic_server import FakeAnthropicServer
from .gemini_server import FakeGeminiServer
from .openai_server import FakeOpenAIServer


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Fake OpenAI, Anthropic and Gemini servers on loopback.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument(
        "--port", type=int, default=9990, help="OpenAI port; Anthropic and Gemini take the next two"
    )
    args = parser.parse_args(argv)
    servers = [
        FakeOpenAIServer(host=args.host, port=args.port),
        FakeAnthropicServer(host=args.host, port=args.port + 1),
        FakeGeminiServer(host=args.host, port=args.port + 2),
    ]
    for server in servers:
        server.start()
    host, port = args.host, args.port
    print(
        f"fake providers: OpenAI http://{host}:{port}/v1, Anthropic http://{host}:{port + 1}, "
        f"Gemini http://{host}:{port + 2} (Ctrl-C to stop)",
        flush=True,
    )
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        for server in servers:
            server.stop()


if __name__ == "__main__":
    main()
