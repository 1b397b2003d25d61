"""The main job as a user runs it: `infernet up` in a subprocess, the real embedded model,
the official openai client and `infernet chat`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import openai
import psutil
import pytest

from tests.harness import free_port

pytestmark = pytest.mark.slow
MODEL = "smollm2-135m-instruct"
ROOT = Path(__file__).resolve().parents[1]


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INFERNET_")}
    env["INFERNET_HOME"] = str(home)
    env["PYTHONPATH"] = str(ROOT / "src")
    return env


class Up:
    def __init__(self, home: Path, port: int) -> None:
        self.home, self.port = home, port
        self.log = open(home.parent / f"up-{home.name}.log", "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "infernet", "up", "--port", str(port)],
            env=_env(home), stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )
        self.wait_ready()

    def wait_ready(self) -> None:
        home = self.home
        deadline = time.monotonic() + 180
        while True:
            assert self.proc.poll() is None, (home.parent / f"up-{home.name}.log").read_text()
            try:
                cfg = json.loads((home / "client.json").read_text())
                models = httpx.get(cfg["url"] + "/v1/models", headers={"Authorization": f"Bearer {cfg['api_key']}"}).json()
                if any(m["id"] == MODEL for m in models["data"]):
                    break
            except (FileNotFoundError, ValueError, KeyError, httpx.HTTPError):
                pass
            assert time.monotonic() < deadline, "infernet up did not come up"
            time.sleep(0.2)
        self.url, self.key = cfg["url"], cfg["api_key"]
        self.client = openai.OpenAI(base_url=self.url + "/v1", api_key=self.key, max_retries=0)

    def node_pid(self) -> int:
        return json.loads((self.home / "nodes" / "0" / "node-status.json").read_text())["pid"]

    def stop(self) -> int:
        family = [self.proc.pid] + [c.pid for c in psutil.Process(self.proc.pid).children(recursive=True)]
        self.proc.send_signal(signal.SIGINT)
        code = self.proc.wait(30)
        time.sleep(0.2)
        left = [p for p in family if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
        assert not left, f"processes left behind: {left}"
        return code


@pytest.fixture(scope="module")
def reference():
    """llama-cpp-python's own chat completion on the same GGUF: the tokenizer's truth."""
    from llama_cpp import Llama

    from infernet.backends.embedded import find_gguf

    return Llama(model_path=str(find_gguf()), n_ctx=4096, n_threads=2, verbose=False)


@pytest.fixture(scope="module")
def up(tmp_path_factory):
    home = tmp_path_factory.mktemp("net") / "home"
    home.mkdir()
    net = Up(home, free_port())
    yield net
    if net.proc.poll() is None:
        net.stop()


QUESTION = [{"role": "user", "content": "What is 2+2?"}]


def test_chat_answers_with_the_tokenizers_usage(up, reference):
    r = up.client.chat.completions.create(model=MODEL, messages=QUESTION, temperature=0, max_tokens=40)
    ref = reference.create_chat_completion(messages=QUESTION, temperature=0, max_tokens=40)
    assert r.choices[0].message.content == ref["choices"][0]["message"]["content"]
    assert "4" in r.choices[0].message.content
    assert r.usage.prompt_tokens == ref["usage"]["prompt_tokens"]
    assert r.usage.completion_tokens == ref["usage"]["completion_tokens"]
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens


def test_stream_with_usage_matches_the_unstreamed_answer(up):
    kw = dict(model=MODEL, messages=[{"role": "user", "content": "Name three colors."}], temperature=0, max_tokens=30)
    whole = up.client.chat.completions.create(**kw)
    parts, usage = [], None
    for chunk in up.client.chat.completions.create(**kw, stream=True, stream_options={"include_usage": True}):
        if chunk.choices and chunk.choices[0].delta.content:
            parts.append(chunk.choices[0].delta.content)
        usage = chunk.usage or usage
    assert "".join(parts) == whole.choices[0].message.content
    assert usage.completion_tokens == whole.usage.completion_tokens and usage.prompt_tokens == whole.usage.prompt_tokens


def test_completions_and_stop(up, reference):
    r = up.client.completions.create(model=MODEL, prompt="The capital of France is", max_tokens=12, temperature=0)
    ref = reference.create_completion("The capital of France is", max_tokens=12, temperature=0)
    assert r.choices[0].text == ref["choices"][0]["text"]
    assert r.usage.prompt_tokens == ref["usage"]["prompt_tokens"]
    assert r.usage.completion_tokens == ref["usage"]["completion_tokens"]
    stopped = up.client.completions.create(model=MODEL, prompt="The capital of France is", max_tokens=12, temperature=0, stop=["."])
    assert "." not in stopped.choices[0].text and ref["choices"][0]["text"].startswith(stopped.choices[0].text)


def test_seed_makes_sampling_repeatable(up):
    kw = dict(model=MODEL, messages=[{"role": "user", "content": "Tell me a word."}], temperature=1.0, seed=7, max_tokens=12)
    assert up.client.chat.completions.create(**kw).choices[0].message.content == up.client.chat.completions.create(**kw).choices[0].message.content


def test_models_and_errors_through_the_openai_client(up):
    assert sorted(m.id for m in up.client.models.list()) == ["all-minilm-l6-v2", MODEL]
    with pytest.raises(openai.NotFoundError):
        up.client.chat.completions.create(model="no-such-model", messages=QUESTION)
    with pytest.raises(openai.BadRequestError):
        up.client.chat.completions.create(model=MODEL, messages=[])
    with pytest.raises(openai.BadRequestError):
        up.client.chat.completions.create(model=MODEL, messages=QUESTION, max_tokens=-1)
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=up.url + "/v1", api_key="wrong", max_retries=0).models.list()


def test_infernet_chat_cli(up):
    env = _env(up.home)
    out = subprocess.run([sys.executable, "-m", "infernet", "chat", "What is 2+2?", "--temperature", "0", "--max-tokens", "40"], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    api = up.client.chat.completions.create(model=MODEL, messages=QUESTION, temperature=0, max_tokens=40)
    assert out.stdout.strip() == api.choices[0].message.content.strip()
    short = subprocess.run([sys.executable, "-m", "infernet", "what is 2+2?", "--max-tokens", "5"], env=env, capture_output=True, text=True, timeout=120)
    assert short.returncode == 0 and short.stdout.strip()
    piped = subprocess.run([sys.executable, "-m", "infernet"], input="summarize: water is wet", env=env, capture_output=True, text=True, timeout=120)
    assert piped.returncode == 0 and piped.stdout.strip()
    as_json = subprocess.run([sys.executable, "-m", "infernet", "chat", "hi", "--json", "--max-tokens", "3", "--system", "Be brief."], env=env, capture_output=True, text=True, timeout=120)
    assert json.loads(as_json.stdout)["usage"]["completion_tokens"] <= 3
    bad = subprocess.run([sys.executable, "-m", "infernet", "chat", "hi", "--model", "nope"], env=env, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1 and "nope" in bad.stderr and "Traceback" not in bad.stderr


# -- the API surface on the real model -------------------------------------------------------

WEATHER = [{"type": "function", "function": {
    "name": "get_weather", "description": "The current weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 40}}, "required": ["city"], "additionalProperties": False},
}}]
PARIS = [{"role": "user", "content": "What is the weather in Paris?"}]


def test_json_schema_answers_parse_and_match_the_schema(up):
    from pydantic import BaseModel, Field

    class Person(BaseModel):
        name: str = Field(max_length=30)
        age: int

    parsed = up.client.chat.completions.parse(model=MODEL, messages=[{"role": "user", "content": "Invent a person."}], response_format=Person, temperature=0, max_tokens=60)
    person = parsed.choices[0].message.parsed
    assert isinstance(person, Person) and person.name
    loose = up.client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "List two fruits."}], response_format={"type": "json_object"}, max_tokens=80, seed=1)
    assert isinstance(json.loads(loose.choices[0].message.content), dict)


def test_required_tool_choice_returns_a_valid_call_and_the_stream_reassembles_it(up):
    kw = dict(model=MODEL, messages=PARIS, tools=WEATHER, tool_choice="required", temperature=0, max_tokens=60)
    r = up.client.chat.completions.create(**kw)
    assert r.choices[0].finish_reason == "tool_calls" and r.choices[0].message.content is None
    (call,) = r.choices[0].message.tool_calls
    args = json.loads(call.function.arguments)
    assert call.function.name == "get_weather" and set(args) == {"city"} and isinstance(args["city"], str)
    deltas = [d for c in up.client.chat.completions.create(**kw, stream=True) if c.choices for d in c.choices[0].delta.tool_calls or ()]
    assert deltas[0].function.name == "get_weather" and deltas[0].id
    assert "".join(d.function.arguments or "" for d in deltas) == call.function.arguments
    named = up.client.chat.completions.create(**{**kw, "tool_choice": {"type": "function", "function": {"name": "get_weather"}}})
    assert named.choices[0].message.tool_calls[0].function.name == "get_weather"
    # The node's count of the call (and of its tool-laden prompt) is what the control plane
    # counts in the relayed text: billed as claimed, not as an overclaim.
    receipt = httpx.get(f"{up.url}/api/v1/jobs/{r.id}/receipt", headers={"Authorization": f"Bearer {up.key}"}).json()
    assert receipt["settlement"]["metered"] == "claimed", receipt["settlement"]
    assert receipt["settlement"]["output_tokens"] == r.usage.completion_tokens > 0


def test_logprobs_come_back_with_the_asked_number_of_alternatives(up, reference):
    r = up.client.chat.completions.create(model=MODEL, messages=QUESTION, temperature=0, max_tokens=8, logprobs=True, top_logprobs=4)
    entries = r.choices[0].logprobs.content
    assert len(entries) == r.usage.completion_tokens and all(len(e.top_logprobs) == 4 for e in entries)
    assert "".join(e.token for e in entries) == r.choices[0].message.content
    # Greedy: the chosen token is the most likely one, and the alternatives come in order.
    for e in entries:
        assert e.logprob == pytest.approx(e.top_logprobs[0].logprob) and [t.logprob for t in e.top_logprobs] == sorted((t.logprob for t in e.top_logprobs), reverse=True)
    comp = up.client.completions.create(model=MODEL, prompt="The capital of France is", max_tokens=4, temperature=0, logprobs=2)
    assert all(len(t) == 2 for t in comp.choices[0].logprobs.top_logprobs) and len(comp.choices[0].logprobs.tokens) == 4


def test_penalties_and_bias_are_applied(up, reference):
    base = dict(model=MODEL, messages=[{"role": "user", "content": "Say the word hello five times."}], temperature=0, max_tokens=20)
    plain = up.client.chat.completions.create(**base).choices[0].message.content
    first = reference.tokenize(plain.encode(), add_bos=False)[0]
    biased = up.client.chat.completions.create(**base, logit_bias={str(first): -100}).choices[0].message.content
    assert reference.tokenize(biased.encode(), add_bos=False)[0] != first
    assert up.client.chat.completions.create(**base, frequency_penalty=2.0).choices[0].message.content != plain


def test_each_refused_parameter_is_a_400_naming_it(up):
    cases = [
        ({"presence_penalty": 5}, "presence_penalty"),
        ({"messages": [{"role": "user", "content": [{"type": "text", "text": "What is in this picture?"}, {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}]}]}, "messages[0].content"),
        ({"top_logprobs": 30, "logprobs": True}, "top_logprobs"),
        ({"tool_choice": "required"}, "tool_choice"),
        ({"functions": [{"name": "f", "parameters": {}}]}, "functions"),
        ({"n": 2}, "n"),
    ]
    for extra, param in cases:
        with pytest.raises(openai.BadRequestError) as err:
            up.client.chat.completions.create(**{"model": MODEL, "messages": QUESTION, "max_tokens": 5, **extra})
        assert err.value.body["param"] == param, (extra, err.value.body)
    with pytest.raises(openai.BadRequestError) as err:
        up.client.chat.completions.create(model=MODEL, messages=QUESTION, max_tokens=5, logit_bias={"999999": 5})
    assert "logit_bias" in err.value.message
    info = up.client.models.retrieve(MODEL)
    assert info.model_extra["max_model_len"] == 4096 and info.model_extra["input_modalities"] == ["text"]
    assert {"tools", "tool_choice", "json_schema", "logprobs"} <= set(info.model_extra["features"])


def test_the_ollama_api_serves_the_real_model(up):
    import ollama

    c = ollama.Client(host=up.url, headers={"Authorization": f"Bearer {up.key}"})
    assert MODEL in [m.model for m in c.list().models]
    whole = c.chat(model=MODEL, messages=QUESTION, options={"temperature": 0, "num_predict": 40})
    api = up.client.chat.completions.create(model=MODEL, messages=QUESTION, temperature=0, max_tokens=40)
    assert whole.message.content == api.choices[0].message.content
    assert whole.eval_count == api.usage.completion_tokens and whole.prompt_eval_count == api.usage.prompt_tokens
    streamed = "".join(p.message.content for p in c.chat(model=MODEL, messages=QUESTION, options={"temperature": 0, "num_predict": 40}, stream=True))
    assert streamed == whole.message.content
    shaped = c.chat(model=MODEL, messages=[{"role": "user", "content": "Invent a person."}], format={"type": "object", "properties": {"name": {"type": "string", "maxLength": 20}}, "required": ["name"]}, options={"temperature": 0, "num_predict": 40})
    assert set(json.loads(shaped.message.content)) == {"name"}
    raw = c.generate(model=MODEL, prompt="The capital of France is", raw=True, options={"temperature": 0, "num_predict": 12})
    assert raw.response == up.client.completions.create(model=MODEL, prompt="The capital of France is", max_tokens=12, temperature=0).choices[0].text


def test_killing_the_node_mid_stream_fails_the_job_cleanly(up):
    stream = up.client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Write a long story about a dragon."}], max_tokens=2000, stream=True)
    job_id, got = None, 0
    with pytest.raises(openai.APIError) as caught:
        for chunk in stream:
            job_id = chunk.id
            got += 1
            if got == 3:
                os.kill(up.node_pid(), signal.SIGKILL)
    assert "went away" in str(caught.value)
    job = httpx.get(f"{up.url}/api/v1/jobs/{job_id}", headers={"Authorization": f"Bearer {up.key}"}).json()
    assert job["status"] == "failed" and "went away" in job["error"]["message"]


def test_restart_keeps_earlier_jobs_readable(up, tmp_path):
    headers = {"Authorization": f"Bearer {up.key}"}
    up.wait_ready()  # the node killed above is restarted by `up`
    job = httpx.post(f"{up.url}/api/v1/jobs", json={"model": MODEL, "prompt": "One, two,", "max_tokens": 5, "temperature": 0}, headers=headers).json()
    deadline = time.monotonic() + 120
    while (done := httpx.get(f"{up.url}/api/v1/jobs/{job['id']}", headers=headers).json())["status"] not in ("completed", "failed"):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert done["status"] == "completed", done
    assert up.stop() == 0
    again = Up(up.home, free_port())
    try:
        after = httpx.get(f"{again.url}/api/v1/jobs/{job['id']}", headers=headers).json()
        assert after["status"] == "completed" and after["result"] == done["result"] and after["usage"] == done["usage"]
        with httpx.stream("GET", f"{again.url}/api/v1/jobs/{job['id']}/stream", headers=headers) as s:
            replay = [json.loads(line[6:]) for line in s.iter_lines() if line.startswith("data: ")]
        assert "".join(e.get("text", "") for e in replay) == done["result"]["text"]
        assert again.key == up.key
    finally:
        again.stop()

