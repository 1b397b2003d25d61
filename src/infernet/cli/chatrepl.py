"""The conversation `infernet chat` opens on a terminal when it is given no prompt.

The history is kept for the session (never written to disk: prompts may be private) and
sent whole with each question, as a chat API wants. An answer cut short with Ctrl-C is
cancelled on the node (closing the stream cancels the job, and it is charged only for what
was delivered) and is left out of the history, with its question, so the next question
does not build on half an answer.
"""

from __future__ import annotations

import sys
from typing import Any

from infernet.cli.app import console, err
from infernet.client import Client, InfernetError

PROMPT = ">>> "
HELP = """\
/model [NAME]    switch model (alone: list what the network serves)
/system [TEXT]   set the system prompt (alone: remove it)
/clear           forget the conversation so far
/quit            leave (also /exit, /bye, Ctrl-D)
Ctrl-C stops an answer; the question is dropped from the history."""


def hint_for(exc: InfernetError) -> str | None:
    return {
        401: "check the API key: --api-key, INFERNET_API_KEY, or the one `infernet up` printed",
        402: "add funds: `infernet keys api credit KEY_ID 10.00` (admin), or lower --max-tokens",
        404: "list what is served with `infernet models`",
        429: "the network is busy; try again in a moment",
        503: "no node is online; start one with `infernet start`",
    }.get(exc.status)


class Conversation:
    def __init__(self, client: Client, model: str, system: str | None, options: dict[str, Any]) -> None:
        self.client = client
        self.model = model
        self.system = system
        self.options = options  # max_tokens, temperature
        self.history: list[dict[str, str]] = []

    def messages(self, text: str) -> list[dict[str, str]]:
        head = [{"role": "system", "content": self.system}] if self.system else []
        return [*head, *self.history, {"role": "user", "content": text}]

    def ask(self, text: str) -> None:
        """Stream the answer to `text`; on success the exchange joins the history."""
        answer, usage = [], None
        try:
            for chunk in self.client.chat_stream(model=self.model, messages=self.messages(text), **self.options):
                for choice in chunk.get("choices", []):
                    piece = choice.get("delta", {}).get("content")
                    if piece:
                        answer.append(piece)
                        sys.stdout.write(piece)
                        sys.stdout.flush()
                usage = chunk.get("usage") or usage
        except KeyboardInterrupt:
            sys.stdout.write("\n")
            err.print("[yellow]stopped[/] [dim](the question is left out of the history)[/]")
            return
        except InfernetError as exc:
            sys.stdout.write("\n" if answer else "")
            hint = hint_for(exc)
            err.print(f"[bold red]error:[/] {exc.message}" + (f"\n[dim]→ {hint}[/]" if hint else ""), highlight=False)
            return
        sys.stdout.write("\n")
        self.history += [{"role": "user", "content": text}, {"role": "assistant", "content": "".join(answer)}]
        if usage:
            err.print(f"[dim]{self.model} · {usage['prompt_tokens']} prompt + {usage['completion_tokens']} completion tokens[/]", highlight=False)

    def command(self, line: str) -> bool:
        """A /command; False to leave."""
        name, _, arg = line[1:].partition(" ")
        arg = arg.strip()
        if name in ("quit", "exit", "bye", "q"):
            return False
        if name == "help":
            console.print(HELP, highlight=False, markup=False)
        elif name == "clear":
            self.history.clear()
            console.print("[dim]conversation cleared[/]")
        elif name == "system":
            self.system = arg or None
            console.print(f"[dim]system prompt {'set' if arg else 'removed'}[/]")
        elif name == "model":
            self._model(arg)
        else:
            console.print(f"[yellow]unknown command /{name}[/]; /help lists them", highlight=False)
        return True

    def _model(self, name: str) -> None:
        try:
            served = [m for m in self.client.models() if m.get("kind", "chat") == "chat"]
        except InfernetError as exc:
            err.print(f"[bold red]error:[/] {exc.message}", highlight=False)
            return
        names = [m["id"] for m in served]
        if not name:
            for n in names:
                console.print(f"{'*' if n == self.model else ' '} {n}", highlight=False)
            return
        if name not in names:
            console.print(f"[yellow]the network serves no chat model {name!r}[/]; it serves: {', '.join(names) or 'none'}", highlight=False)
            return
        self.model = name
        console.print(f"[dim]now chatting with {name}[/]", highlight=False)


def run(conv: Conversation) -> None:
    try:
        import readline  # noqa: F401  (line editing and ↑ history for input())
    except ImportError:
        pass
    console.print(f"[bold]{conv.model}[/] on {conv.client.url} [dim]· /help for commands · Ctrl-D to leave[/]", highlight=False)
    while True:
        try:
            line = input(PROMPT).strip()
        except EOFError:
            sys.stdout.write("\n")
            return
        except KeyboardInterrupt:
            sys.stdout.write("\n")
            err.print("[dim](/quit or Ctrl-D leaves)[/]")
            continue
        if not line:
            continue
        if line.startswith("/"):
            if not conv.command(line):
                return
            continue
        conv.ask(line)
