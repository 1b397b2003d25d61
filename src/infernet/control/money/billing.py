"""Where jobs meet money: admit (rate limit, price, hold), receipt terms, settle or release.

The job driver calls: `admit` before a job starts, `terms` when it hands the job to a node
(the receipt fields the node will sign), and when the job ends `countersign` (check the
node's signed claim, meter the relayed text, sign the settlement) and `settle`. Admin keys are
the operator's own: never refused for balance (their account may go negative), but metered,
receipted and paid to nodes like any other, so `infernet up` works out of the box and its
node still earns.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from infernet.control.dispatch.jobs import JobState, JobStatus
from infernet.control.dispatch.placement import Offer
from infernet.control.errors import PaymentRequired, RateLimited
from infernet.control.money import pricing
from infernet.control.money.ledger import (
    InsufficientFunds,
    Ledger,
    SignedReceipt,
    SpendLimitReached,
)
from infernet.control.money.metering import Metered, Tokenizers, meter, prompt_bound
from infernet.control.store import KeyLimits, Store
from infernet.control.store.rates import RateCount
from infernet.protocol import keys, receipts

log = logging.getLogger("infernet.billing")

PRICING_SETTING = "pricing"
RECEIPT_SKEW_S = 300  # a node's completed_at may differ this much from the control plane's clock


def platform_identity(data_dir: Path) -> keys.Identity:
    """The control plane's signing key, `platform_key.json` (0600) in its data directory.

    Every replica of one network must use the same key: copy the file to each.
    """
    return keys.load_or_create(data_dir / "platform_key.json")


@dataclass
class Billing:
    store: Store
    platform: keys.Identity
    ledger: Ledger = field(init=False)

    def __post_init__(self) -> None:
        self.ledger = Ledger(self.store.engine)
        self.tokenizers = Tokenizers()
        self._table: tuple[float, pricing.PriceTable] | None = None
        self._keys: dict[str, tuple[float, bool, KeyLimits]] = {}
        self._key_asks: dict[str, asyncio.Future[tuple[bool, KeyLimits]]] = {}  # one read per key at a time
        # Each rate-limited key's last count, for the x-ratelimit-* headers of its response.
        self.rates: dict[str, RateCount] = {}

    # -- the operator's price table (shared by replicas through the store) ----------------

    async def table(self) -> pricing.PriceTable:
        now = time.monotonic()
        if self._table is not None and self._table[0] > now:
            return self._table[1]
        raw = await self.store.settings.get(PRICING_SETTING)
        table = pricing.DEFAULT
        if raw is not None:
            try:
                table = pricing.decode_table(raw)
            except ValueError:
                log.error("the stored price table is invalid; using the defaults")
        self._table = (now + 2.0, table)  # a change reaches every replica within 2 s
        return table

    async def set_table(self, table: pricing.PriceTable) -> None:
        await self.store.settings.put(PRICING_SETTING, pricing.encode_table(table))
        self._table = None

    def output_rate(self, tier: str, asked: dict[str, int] | None) -> int:
        """What a node of this paid tier asking these rates earns per million output tokens,
        by the table last read (routing's `max_price` compares this)."""
        table = self._table[1] if self._table is not None else pricing.DEFAULT
        return pricing.node_rates(table, tier, asked).output

    # -- the job's life -------------------------------------------------------------------

    async def admit(self, job_id: str, key_id: str, kind: str, model: str, body: dict[str, Any], offers: Iterable[Offer]) -> dict[str, Any]:
        """Rate-limit, then hold the job's worst-case price. Returns the body to run.

        `offers`: the online nodes serving the model. Raises RateLimited or PaymentRequired.
        When neither max_tokens nor the model's context is known, the hold's output cap is
        written into the body so the engine honours it.
        """
        is_admin, limits = await self._key(key_id)
        if limits.rate_limit is not None:
            rate = await self.store.rates.hit(key_id, limits.rate_limit)
            if len(self.rates) > 10_000:
                self.rates.clear()
            self.rates[key_id] = rate
            if rate.wait is not None:
                raise RateLimited(rate.wait)
        else:
            self.rates.pop(key_id, None)
        table = await self.table()
        serving = list(offers)
        contexts = [m.context_length for o in serving for m in o.info.models if m.name == model and m.context_length]
        context = max(contexts) if contexts else None
        out_cap = pricing.output_token_cap(kind, body, context, table)
        if kind != "embedding" and context is None and not body.get("max_tokens"):
            body = {**body, "max_tokens": out_cap}
        rates = [pricing.node_rates(table, o.paid_tier, o.info.price) for o in serving]
        count = await self.tokenizers.ready(model)
        amount = pricing.worst_case(prompt_bound(kind, body, count), out_cap, rates)

        def hold(conn: Any) -> Any:
            return self.ledger.hold_in(conn, job_id, key_id, amount, overdraft=is_admin, min_balance=table.min_balance, spend_limit=limits.spend_limit)

        # Holds, settlements and releases ride the store's journal, batched and in order with
        # the jobs' own writes. A hold that can be refused is committed at once and awaited:
        # the job must not start before its money is in escrow. An admin key's hold without a
        # spend limit cannot be refused, so it rides the next batch, ahead of the job's own
        # settlement (the journal keeps order).
        if is_admin and limits.spend_limit is None:
            self.store.journal.submit(hold)
            return body
        queued = self.store.journal.submit(hold, urgent=True)
        try:
            refused = await queued
            if refused is not None:
                raise refused
        except InsufficientFunds as exc:
            need = receipts.usdc(exc.needed)
            raise PaymentRequired(
                f"Insufficient balance: this request needs {need} USDC on account "
                f"(its worst-case price, and at least the {receipts.usdc(table.min_balance)} USDC minimum balance); "
                f"you have {receipts.usdc(exc.balance)} USDC. Add funds, or lower max_tokens.",
            ) from None
        except SpendLimitReached as exc:
            raise PaymentRequired(
                f"Spend limit reached: this key may spend {receipts.usdc(exc.limit)} USDC per 24 h and has "
                f"{receipts.usdc(exc.spent)} USDC spent or held; this request could cost {receipts.usdc(exc.needed)} USDC. "
                "Ask an admin to raise the limit, or lower max_tokens.",
                code="spend_limit_exceeded",
            ) from None
        return body

    async def terms(self, job: JobState, offer: Offer) -> dict[str, Any]:
        table = await self.table()
        rates = pricing.node_rates(table, offer.paid_tier, offer.info.price)
        return receipts.terms(
            job_id=job.id, node_pubkey=offer.info.node_id, platform_pubkey=self.platform.pubkey, client=job.key_id, model=job.model,
            input_rate=rates.input, output_rate=rates.output, fee_bps=table.fee_bps, chain=table.chain,
        )

    def countersign(self, job: JobState, body: dict[str, Any], output: str, delivered: str) -> tuple[SignedReceipt | None, Metered | None]:
        """Check the node's signed claim, meter what it served from the text relayed (`output`
        sent by the node, `delivered` to the client), and sign the settlement. (None, None)
        when there is nothing to charge; the metering also when the claim was refused."""
        terms, signed, usage = job.terms, job.receipt, job.usage
        if terms is None or usage is None or job.status not in (JobStatus.COMPLETED, JobStatus.CANCELLED):
            return None, None
        metered = meter(usage, kind=job.kind, body=body, output=output, delivered=delivered, count=self.tokenizers.get(job.model))
        if signed is None:
            log.warning("job %s: the node sent no signed receipt; nothing is charged", job.id)
            return None, metered
        claim, sig = signed
        when = claim.get("completed_at") if isinstance(claim, dict) else None
        if not isinstance(when, int) or isinstance(when, bool) or abs(time.time() - when) > RECEIPT_SKEW_S:
            log.warning("job %s: the node's receipt has no plausible completed_at; nothing is charged", job.id)
            return None, metered
        expected = receipts.complete(terms, usage.prompt_tokens, usage.completion_tokens, when)
        if claim != expected:
            wrong = sorted(k for k in set(claim) | set(expected) if claim.get(k) != expected.get(k))
            log.warning("job %s: the node's receipt differs from the job in %s; nothing is charged", job.id, wrong)
            return None, metered
        if not keys.verify(terms["node_pubkey"], receipts.digest(expected), sig):
            log.warning("job %s: the node's receipt signature is bad; nothing is charged", job.id)
            return None, metered
        if metered.overclaimed:
            log.warning("job %s: the node claimed %d/%d tokens; metered %d/%d (%s)", job.id, usage.prompt_tokens, usage.completion_tokens, metered.prompt_tokens, metered.completion_tokens, metered.how)
        settled = receipts.settlement(
            expected, input_tokens=metered.prompt_tokens, output_tokens=metered.completion_tokens,
            delivered_tokens=metered.delivered_tokens, metered=metered.how, settled_at=int(time.time()),
        )
        return SignedReceipt(expected, sig, settled, self.platform.sign(receipts.digest(settled))), metered

    def settle(self, job_id: str, receipt: SignedReceipt | None) -> asyncio.Future[bool]:
        """Charge the receipt from the job's hold and release the rest; with no receipt, or
        one over the hold, release it all. Queued on the journal, in order with the job's
        own writes; True when money moved."""

        async def settle(tx: Any) -> bool:
            me = self.store.owner
            if receipt is not None:
                outcome = await self.ledger.settle_in(tx, job_id, receipt, owner=me)
                if outcome == "settled":
                    return True
                if outcome == "not ours":
                    return False  # another replica took the job over: the money is its to move
                if outcome == "over hold":
                    log.warning("job %s costs %d, more than was held; releasing its hold", job_id, receipt.settlement["price"])
            await self.ledger.release_in(tx, job_id, owner=me)
            return False

        # With money to move, the caller awaits it before the client sees the end: commit now,
        # in one transaction with the job's final row (an urgent movement keeps its batch whole).
        return self.store.journal.submit(settle, urgent=receipt is not None)

    async def release(self, job_id: str) -> None:
        await self.store.journal.submit(lambda tx: self.ledger.release_in(tx, job_id, owner=self.store.owner))

    def forget_key(self, key_id: str) -> None:
        self._keys.pop(key_id, None)

    async def _key(self, key_id: str) -> tuple[bool, KeyLimits]:
        """(is admin, limits), cached 2 s like API keys themselves."""
        now = time.monotonic()
        hit = self._keys.get(key_id)
        if hit is not None and hit[0] > now:
            return hit[1], hit[2]
        # Requests on one key with the cache cold share one read (a thousand streams opened at
        # once each read it twice and ran the pool dry: bench/fleet.py); its own task, so a
        # cancelled request never cancels it for the others.
        asking = self._key_asks.get(key_id)
        if asking is None:
            asking = self._key_asks[key_id] = asyncio.ensure_future(self._read_key(key_id, now))
            asking.add_done_callback(lambda _t: self._key_asks.pop(key_id, None))
        return await asyncio.shield(asking)

    async def _read_key(self, key_id: str, now: float) -> tuple[bool, KeyLimits]:
        key = await self.store.keys.get(key_id)
        limits = await self.store.keys.limits(key_id)
        is_admin = key is not None and key.is_admin
        if len(self._keys) > 10_000:
            self._keys.clear()
        self._keys[key_id] = (now + 2.0, is_admin, limits)
        return is_admin, limits
