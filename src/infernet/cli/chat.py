"""`infernet chat`: ask the network, stream the answer."""

from __future__ import annotations

import json
import sys
from typing import Annotated, Optional

import typer

from infernet.cli.app import app, err, fail, resolve_client
from infernet.cli.chatrepl import Conversation, hint_for, run
from infernet.client import Client, InfernetError


@app.command()
def chat(
    prompt: Annotated[Optional[str], typer.Argument(help="What to ask; read from stdin when piped.")] = None,
    model: Annotated[Optional[str], typer.Option("--model", "-m", help="Model name; default: the first one online.")] = None,
    max_tokens: Annotated[Optional[int], typer.Option("--max-tokens", min=1)] = None,
    temperature: Annotated[Optional[float], typer.Option("--temperature", "-t", min=0.0, max=2.0)] = None,
    system: Annotated[Optional[str], typer.Option("--system", "-s", help="A system prompt.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the whole response as JSON, not streamed.")] = False,
    url: Annotated[Optional[str], typer.Option("--url", help="Control plane URL [env INFERNET_URL].")] = None,
    api_key: Annotated[Optional[str], typer.Option("--api-key", help="API key [env INFERNET_API_KEY].")] = None,
) -> None:
    """Ask a question; the answer streams in. With no prompt on a terminal: a conversation."""
    terminal = sys.stdin.isatty()
    piped = "" if terminal else sys.stdin.read().strip()
    text = "\n\n".join(p for p in (prompt, piped) if p)
    if not text and not (terminal and not as_json):
        fail("nothing to ask", 'pass a prompt (`infernet chat "What is 2+2?"`) or pipe text in')
    base, key = resolve_client(url, api_key)
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": text}]
    body: dict = {"messages": messages}
    if max_tokens is not None:
        body["max_tokens"] = max_tokens
    if temperature is not None:
        body["temperature"] = temperature
    try:
        with Client(base, key) as client:
            if model is None:
                chat_models = [m["id"] for m in client.models() if m.get("kind", "chat") == "chat"]
                if not chat_models:
                    fail("no chat model is online", "start a node with `infernet start` (or `infernet up`)")
                model = chat_models[0]
            if not text:
                options = {k: body[k] for k in ("max_tokens", "temperature") if k in body}
                run(Conversation(client, model, system, options))
                return
            body["model"] = model
            if as_json:
                print(json.dumps(client.chat(**body), indent=2))
                return
            usage = None
            for chunk in client.chat_stream(**body):
                for choice in chunk.get("choices", []):
                    piece = choice.get("delta", {}).get("content")
                    if piece:
                        sys.stdout.write(piece)
                        sys.stdout.flush()
                usage = chunk.get("usage") or usage
            sys.stdout.write("\n")
            if usage and sys.stderr.isatty():
                err.print(f"[dim]{model} · {usage['prompt_tokens']} prompt + {usage['completion_tokens']} completion tokens[/]")
    except InfernetError as exc:
        sys.stdout.write("\n") if not as_json else None
        fail(exc.message, hint_for(exc))
