"""The in-process half of ``hub bench fx``, run as a subprocess on the benchmark database
(``python -m bench.fx_probe ...`` with DATABASE_URL set). Prints one JSON line.

- ``setup M Q``: M merchants, each with funded CNY and KRW settlement accounts and a test API
  key, and Q open quotes (CNY to KRW and back, alternately), locked for an hour.
- ``convert T N``: N conversions of open quotes through ``conversion_create`` from T threads
  (each its own connection; each conversion its own transaction).
- ``baseline T N``: the same threads make N times the same three linked transfers with
  ``transfers_create_batch`` alone: the ledger's part of a conversion without the quote, the
  conversion row and its event.
- ``rest-work``: the merchants' keys and, per open quote, what a POST needs.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import django

FUNDING = {"CNY": 10**13, "KRW": 10**15}


def setup(merchants: int, quotes: int) -> dict[str, Any]:
    from django.utils import timezone

    from fx.models import FxQuote
    from fx.quotes import _scale, leg_for_sell
    from fx.rates import fresh_rate
    from hub.models import Participant, Role
    from hub.sandbox import make_brn, make_uscc
    from settlement.ledger import TransferSpec, transfers_create_batch
    from settlement.models import Account

    operator = Participant.objects.create(
        role=Role.OPERATOR,
        legal_name="Bench Hub",
        country="KR",
        registration_id=make_brn("131866666"),
    )
    specs = []
    for n in range(merchants):
        owner = Participant.objects.create(
            role=Role.MERCHANT,
            legal_name=f"Bench Merchant {n}",
            country="CN",
            registration_id=make_uscc("371000", f"MA8F{n:04d}"),
        )
        for currency, amount in FUNDING.items():
            account = Account.objects.create(
                livemode=False,
                owner=owner,
                currency=currency,
                kind=Account.Kind.MERCHANT_SETTLEMENT,
                debits_must_not_exceed_credits=True,
                reference="bench",
            )
            equity = Account.objects.create(
                livemode=False, owner=operator, currency=currency, kind=Account.Kind.EQUITY
            )
            specs.append(
                TransferSpec(
                    debit_account_id=equity.pk,
                    credit_account_id=account.pk,
                    amount=amount,
                    currency=currency,
                )
            )
    transfers_create_batch(livemode=False, specs=specs, atomic=True)
    owners = list(Participant.objects.filter(role=Role.MERCHANT).order_by("pk"))
    now = timezone.now()
    pairs = [("CNY", "KRW", 1000_00), ("KRW", "CNY", 150_000)]
    rates = {
        (sell, buy): fresh_rate(base=sell, quote=buy, today=now.date()) for sell, buy, _ in pairs
    }
    rows = []
    for n in range(quotes):
        sell, buy, amount = pairs[n % 2]
        rate = rates[(sell, buy)]
        leg = leg_for_sell(amount, rate=rate.rate, bps=50, scale=_scale(sell, buy))
        rows.append(
            FxQuote(
                livemode=False,
                merchant=owners[n % len(owners)],
                sell_currency=sell,
                buy_currency=buy,
                fixed_side="sell",
                sell_amount=leg.sell,
                margin_amount=leg.margin,
                buy_amount=leg.buy,
                reference_rate=str(rate.rate),
                rate_source=rate.source,
                rate_date=rate.date,
                margin_bps=50,
                tier="standard",
                expires_at=now + timedelta(hours=1),
            )
        )
    FxQuote.objects.bulk_create(rows, batch_size=5000)
    return {"merchants": merchants, "quotes": quotes}


def _accounts() -> dict[str, dict[str, str]]:
    from settlement.models import Account

    found: dict[str, dict[str, str]] = {}
    for pk, owner, currency in Account.objects.filter(reference="bench").values_list(
        "pk", "owner_id", "currency"
    ):
        found.setdefault(owner, {})[currency] = pk
    return found


def _open_quotes(count: int) -> list[tuple[str, str, str, str]]:
    from fx.models import FxQuote

    return list(
        FxQuote.objects.filter(status="open")
        .order_by("pk")
        .values_list("pk", "merchant_id", "sell_currency", "buy_currency")[:count]
    )


def _run(threads: int, work: list[Any], one: Any, warm: Any) -> tuple[float, list[float]]:
    from django.db import connection

    chunks = [work[n::threads] for n in range(threads)]
    latencies: list[float] = []
    lock = threading.Lock()
    barrier = threading.Barrier(threads + 1)

    def run(chunk: list[Any]) -> None:
        mine = []
        try:
            warm()
            barrier.wait()
            for item in chunk:
                began = time.perf_counter()
                one(item)
                mine.append(time.perf_counter() - began)
        finally:
            connection.close()
        with lock:
            latencies.extend(mine)

    with ThreadPoolExecutor(threads) as pool:
        futures = [pool.submit(run, chunk) for chunk in chunks]
        barrier.wait()
        started = time.perf_counter()
        for future in futures:
            future.result()
        seconds = time.perf_counter() - started
    latencies.sort()
    return seconds, latencies


def convert(threads: int, count: int, offset: int, start_at: float) -> dict[str, Any]:
    """Conversions of the open quotes ``offset`` to ``offset + count`` (in id order), from
    ``threads`` threads, starting at ``start_at`` (epoch seconds) so that several processes
    start together."""
    from fx.quotes import conversion_create
    from hub.models import Participant
    from hub.principal import Principal

    accounts = _accounts()
    principals = {
        p.pk: Principal(participant=p, api_key=None, livemode=False, scopes=frozenset())
        for p in Participant.objects.filter(pk__in=list(accounts))
    }
    work = _open_quotes(offset + count)[offset:]

    def one(item: tuple[str, str, str, str]) -> None:
        quote_id, merchant, sell, buy = item
        conversion_create(
            actor=principals[merchant],
            quote_id=quote_id,
            sell_account_id=accounts[merchant][sell],
            buy_account_id=accounts[merchant][buy],
            reference=quote_id,
        )

    return _timed(threads, work, one, start_at)


def _timed(threads: int, work: list[Any], one: Any, start_at: float) -> dict[str, Any]:
    def warm() -> None:
        _accounts()
        time.sleep(max(0.0, start_at - time.time()))

    began = time.time()
    seconds, latencies = _run(threads, work, one, warm)
    return {
        "count": len(work),
        "started": max(began, start_at),
        "ended": max(began, start_at) + seconds,
        "latencies_ms": [round(x * 1000, 3) for x in latencies],
    }


def baseline(threads: int, count: int, offset: int, start_at: float) -> dict[str, Any]:
    from django.db import transaction

    from hub.conf import hub_settings
    from hub.ids import new_id
    from settlement.ledger import TransferSpec, transfers_create_linked
    from settlement.models import Account
    from settlement.payouts import hub_own_accounts

    Kind = Account.Kind
    accounts = _accounts()
    merchants = sorted(accounts)
    shards: int = hub_settings.FX_SHARDS
    hub = [
        hub_own_accounts(
            wanted=[(k, c) for k in (Kind.FX_POSITION, Kind.FEES) for c in ("CNY", "KRW")],
            livemode=False,
            shard=shard,
        )
        for shard in range(shards)
    ]
    work = [
        (n, merchants[n % len(merchants)], ("CNY", "KRW")[n % 2])
        for n in range(offset, offset + count)
    ]
    amounts = {"CNY": (995_00, 190_000, 5_00), "KRW": (149_250, 780_00, 750)}

    def one(item: tuple[int, str, str]) -> None:
        n, merchant, sell = item
        buy = "KRW" if sell == "CNY" else "CNY"
        converted, bought, margin = amounts[sell]
        mine = hub[n % shards]
        base = new_id("bl")
        with transaction.atomic(durable=True):
            transfers_create_linked(
                livemode=False,
                specs=[
                    TransferSpec(
                        id=f"{base}-sell",
                        debit_account_id=accounts[merchant][sell],
                        credit_account_id=mine[(Kind.FX_POSITION, sell)].pk,
                        amount=converted,
                        currency=sell,
                    ),
                    TransferSpec(
                        id=f"{base}-buy",
                        debit_account_id=mine[(Kind.FX_POSITION, buy)].pk,
                        credit_account_id=accounts[merchant][buy],
                        amount=bought,
                        currency=buy,
                    ),
                    TransferSpec(
                        id=f"{base}-margin",
                        debit_account_id=accounts[merchant][sell],
                        credit_account_id=mine[(Kind.FEES, sell)].pk,
                        amount=margin,
                        currency=sell,
                    ),
                ],
            )

    return _timed(threads, work, one, start_at)


def rest_setup(count: int) -> dict[str, Any]:
    """A test key per merchant, and for each of ``count`` open quotes what its POST names."""
    from hub.models import Participant
    from hub.services.api_keys import issue_key_unaudited

    accounts = _accounts()
    keys = {
        owner.pk: issue_key_unaudited(participant=owner, livemode=False, name="bench")[1]
        for owner in Participant.objects.filter(pk__in=list(accounts))
    }
    work = [
        [quote_id, keys[merchant], accounts[merchant][sell], accounts[merchant][buy]]
        for quote_id, merchant, sell, buy in _open_quotes(count)
    ]
    return {"work": work}


def main(argv: list[str]) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hub.settings")
    django.setup()
    command, *args = argv
    if command == "setup":
        result = setup(int(args[0]), int(args[1]))
    elif command in ("convert", "baseline"):
        run = convert if command == "convert" else baseline
        result = run(int(args[0]), int(args[1]), int(args[2]), float(args[3]))
    elif command == "rest-setup":
        result = rest_setup(int(args[0]))
    else:
        raise SystemExit(f"unknown command {command!r}")
    print(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1:])
