"""The instances' pages: the overview (with its live rows), an instance's License Management page (with its live
part, the peaks chart, the report and its CSV), the Smart Agent's operations behind a confirmation, silences, and
the JSON admin API for bearer-token clients."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote, urlencode

from aiohttp import web
from ccxlic_rules import Entitlement
from ccxlic_rules import report as report_rows
from ccxlic_rules.exits import attention
from ccxlic_rules.forecast import Forecast, forecast, interval_history, risks
from ccxlic_runtime.auth import identity
from ccxlic_runtime.client import ServiceError, agent_command, intervals, snapshot
from ccxlic_runtime.http import BadRequest, check_instance, json_response, problem
from ccxlic_runtime.kafka import KafkaUnavailable
from ccxlic_whatif.whatif import Changes, NoInputs, compare, service_rules, what_if

from ccxlic_console import chart, pages
from ccxlic_console.console import SOURCE, Console, PageError

OPERATIONS: Mapping[str, tuple[str, str]] = {
    # operation -> (what the button says, what the confirmation asks)
    "register": ("Register", "Register {i} with the licensing authority using this token?"),
    "reregister": ("Reregister", "Register {i} again with a new identity?"),
    "deregister": (
        "Deregister",
        "Deregister {i}? Its licenses go back to the virtual account and it returns to evaluation.",
    ),
    "renew_authorization": ("Renew authorization now", "Renew the authorization of {i} now?"),
    "renew_registration": ("Renew registration now", "Renew the registration of {i} now?"),
    "set_license_type": ("Set license type", "Change the license type of {i}?"),
    "set_transport": ("Set transport", "Change how {i} reaches the licensing authority?"),
    "reservation_enable": ("Enable reservation", "Enable Specific License Reservation on {i}?"),
    "reservation_request": ("Request reservation code", "Generate a reservation request code for {i}?"),
    "reservation_install": ("Install authorization code", "Install this authorization code on {i}?"),
    "reservation_return": ("Return reservation", "Return the reserved licenses of {i}? It returns to evaluation."),
    "reservation_disable": ("Disable reservation", "Disable Specific License Reservation on {i}?"),
}
FIELDS = ("token", "transport", "url", "proxy", "deployment", "overage_allowed", "code")


def _form_fields(form: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in FIELDS:
        value = form.get(name)
        if isinstance(value, str) and value.strip():
            out[name] = value.strip()
    if "overage_allowed" in out:
        out["overage_allowed"] = out["overage_allowed"] == "yes"
    return out


def _day(value: str | None, name: str, default: datetime) -> datetime:
    if not value:
        return default
    try:
        day = datetime.fromisoformat(value)
    except ValueError:
        raise BadRequest(f"`{name}` must be a date such as 2026-03-02; got {value!r}") from None
    return (day if day.tzinfo else day.replace(tzinfo=UTC)).astimezone(UTC)


def add_routes(router: web.UrlDispatcher, console: Console) -> None:
    urls = console.urls

    # ------------------------------------------------------------ overview

    def overview_query(request: web.Request) -> dict[str, Any]:
        q = request.query
        sort = q.get("sort", "instance")
        return {
            "q": q.get("q", "")[:64],
            "tone": q.get("tone", "") if q.get("tone", "") in pages.TONES else "",
            "sort": sort if sort in pages.SORTS else "instance",
            "desc": q.get("desc") == "1",
        }

    async def overview_rows(request: web.Request) -> tuple[dict[str, Any], list[pages.OverviewRow], list[str]]:
        query = overview_query(request)
        snap = await snapshot(urls)
        rows = pages.select(pages.overview(snap), query["q"], query["tone"], query["sort"], query["desc"])
        return query, rows, list(snap["errors"])

    async def overview(request: web.Request) -> web.Response:
        query, rows, errors = await overview_rows(request)
        fragment = "/fragments/overview?" + urlencode({k: v for k, v in query.items() if v not in ("", False)})
        return console.page(
            request,
            "overview.html",
            rows=rows,
            errors=errors,
            query=query,
            sorts=pages.SORTS,
            tones=pages.TONES,
            fragment=fragment,
        )

    async def overview_fragment(request: web.Request) -> web.Response:
        _, rows, errors = await overview_rows(request)
        return console.page(request, "_overview_rows.html", rows=rows, errors=errors)

    # ------------------------------------------------------------ instance

    def instance_of(request: web.Request) -> str:
        return check_instance(request.match_info["instance"])

    async def live(instance: str) -> dict[str, Any]:
        snap = await snapshot(urls, instance)
        entry = snap["instances"][0]
        c = entry["compliance"]
        words, tone = pages.state_of(c)
        return {
            "entry": entry,
            "state": words,
            "tone": tone,
            "registration": pages.REGISTRATION.get(str(c["registration"]), "-") if c else "-",
            "bars": pages.bars(entry["usage"]),
            "outbound": pages.outbound(entry["usage"]),
            "attention": attention(entry),
            "deadlines": pages.deadlines(c),
            "agent": await console.get(f"{urls.agent}/v1/instances/{instance}/agent"),
            "errors": snap["errors"],
        }

    def entitlement(usage: Mapping[str, Any] | None) -> Entitlement | None:
        ent = usage.get("entitled") if usage else None
        return Entitlement(ent["standard"], ent["premium"], ent["ivr_ports"]) if ent else None

    async def range_rows(
        request: web.Request, instance: str, usage: Mapping[str, Any] | None
    ) -> tuple[datetime, datetime, list[report_rows.Row], Entitlement | None]:
        as_of = (usage or {}).get("as_of") or datetime.now(UTC).isoformat()
        end = datetime.fromisoformat(str(as_of).replace("Z", "+00:00"))
        default_from = (end - timedelta(days=7)).replace(hour=0, minute=0, second=0, microsecond=0)
        default_to = (end + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
        since = _day(request.query.get("from"), "from", default_from)
        until = _day(request.query.get("to"), "to", default_to)
        if until <= since:
            raise BadRequest("`to` must be after `from`")
        ent = entitlement(usage)  # the usage the page already has: the reports alone are fetched
        return since, until, report_rows.rows(await intervals(urls, instance, since, until), ent), ent

    async def forecast_of(instance: str, usage: Mapping[str, Any] | None) -> Forecast:
        """The coming week's interval peaks (an estimate) from the last seven weeks of interval reports, as of the
        instance's own time."""
        as_of = (usage or {}).get("as_of") or datetime.now(UTC).isoformat()
        now = datetime.fromisoformat(str(as_of).replace("Z", "+00:00"))
        try:
            reports = await intervals(urls, instance, now - timedelta(weeks=7), now + timedelta(days=1))
        except ServiceError:
            reports = []
        if reports:
            now = max(datetime.fromisoformat(str(r["interval_end"]).replace("Z", "+00:00")) for r in reports)
        return forecast(interval_history(reports, now), now, step=timedelta(hours=8))

    async def instance_page(request: web.Request) -> web.Response:
        instance = instance_of(request)
        now = await live(instance)
        usage = now["entry"]["usage"]
        since, until, table, ent = await range_rows(request, instance, usage)
        if usage is None and now["entry"]["compliance"] is None and now["agent"] is None:
            raise PageError(404, f"no service has heard of instance {instance!r}")
        history = await console.get(f"{urls.compliance}/v1/instances/{instance}/compliance/history?limit=1000", {})
        alerts = await console.get(f"{urls.alerting}/v1/alerts?instance={instance}&limit=200", {"alerts": []})
        status, silences = await console.call(
            "GET", f"{urls.alerting}/v1/silences", headers=console.credentials(request)
        )
        silences = [s for s in (silences or {}).get("silences", []) if s.get("instance") in (None, instance)]
        calls = await console.get(f"{urls.agent}/v1/instances/{instance}/agent/calls", {"calls": []})
        coming = await forecast_of(instance, usage)
        drawn = bool(coming.hours) and until >= coming.made_at  # the band follows the peaks when the range reaches now
        return console.page(
            request,
            "instance.html",
            instance=instance,
            live=now,
            fragment=f"/instances/{quote(instance)}/fragments/live",
            chart=chart.svg(
                table,
                ent,
                f"Peaks per reporting interval of {instance} against the entitlements"
                + (", and the forecast of its coming intervals (an estimate)" if drawn else ""),
                coming if drawn else None,
            ),
            forecast=coming,
            forecast_drawn=drawn,
            forecast_over=risks(coming, ent),
            table=table,
            to_buy=report_rows.to_buy(table, ent),
            entitled=ent,
            since=since.date().isoformat(),
            until=until.date().isoformat(),
            timeline=pages.timeline(history.get("transitions", [])),
            active=[a for a in alerts["alerts"] if a.get("state") == "active"],
            past=[a for a in alerts["alerts"] if a.get("state") != "active"],
            silences=silences if status == 200 else [],
            alert_names=sorted({a["alert"] for a in alerts["alerts"]}),
            calls=calls["calls"][:20],
            operations=OPERATIONS,
            done=request.query.get("done", "")[:300],
        )

    async def whatif_page(request: web.Request) -> web.Response:
        """The instance's history replayed in the console's process, as it was and under the form's changes (as
        `ccxlic whatif`); read-only, so any signed-in user may ask."""
        instance = instance_of(request)
        q = request.query

        def number(name: str, low: int, high: int) -> int:
            try:
                value = int(q.get(name) or 0)
            except ValueError:
                raise BadRequest(f"`{name}` must be a whole number; got {q.get(name)!r}") from None
            if not low <= value <= high:
                raise BadRequest(f"`{name}` must be from {low} to {high}")
            return value

        minutes = number("tolerance", 0, 100_000)
        changes = Changes(
            standard=number("standard", -100_000, 100_000),
            premium=number("premium", -100_000, 100_000),
            ivr_ports=number("ivr_ports", -100_000, 100_000),
            no_overage=q.get("no_overage") == "yes",
            tolerance=timedelta(minutes=minutes) if minutes else None,
        )
        since = _day(q.get("from"), "from", datetime.min.replace(tzinfo=UTC)) if q.get("from") else None
        until = _day(q.get("to"), "to", datetime.max.replace(tzinfo=UTC)) + timedelta(days=1) if q.get("to") else None
        if since is not None and until is not None and until <= since:
            raise BadRequest("`to` must not be before `from`")
        try:
            answer = await what_if(console.settings, instance, changes, service_rules(), since, until)
        except NoInputs as exc:
            raise PageError(404, str(exc)) from None
        except KafkaUnavailable as exc:
            raise PageError(503, f"the log cannot be read: {exc}") from None
        return console.page(
            request,
            "whatif.html",
            instance=instance,
            answer=answer,
            changes=changes.words(),
            rows=compare(answer.replayed, answer.what_if),
            form=dict(q),
        )

    async def instance_fragment(request: web.Request) -> web.Response:
        instance = instance_of(request)
        return console.page(request, "_instance_live.html", instance=instance, live=await live(instance))

    async def report_csv(request: web.Request) -> web.StreamResponse:
        instance = instance_of(request)
        usage = await console.get(f"{urls.consumption}/v1/instances/{instance}/usage")
        since, until, table, _ = await range_rows(request, instance, usage)
        name = f"{instance}-{since.date().isoformat()}-{until.date().isoformat()}.csv"
        return web.Response(
            text=report_rows.as_csv(table),
            content_type="text/csv",
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )

    # ------------------------------------------------------------ actions

    async def action(request: web.Request) -> web.Response:
        who = identity(request)
        assert who is not None
        instance = instance_of(request)
        form = await request.post()
        operation = str(form.get("operation", ""))
        if operation not in OPERATIONS:
            raise PageError(400, f"unknown operation {operation!r}")
        fields = _form_fields(form)
        try:  # check the fields before asking for a confirmation
            agent_command(instance, operation, datetime.now(UTC), SOURCE, **fields)
        except ValueError as exc:
            console.actions.labels(operation, "invalid").inc()
            return console.page(
                request,
                "result.html",
                status=400,
                instance=instance,
                operation=operation,
                label=OPERATIONS[operation][0],
                result={"ok": False, "message": str(exc)},
            )
        if form.get("confirmed") != "yes":
            return console.page(
                request,
                "confirm.html",
                instance=instance,
                operation=operation,
                label=OPERATIONS[operation][0],
                question=OPERATIONS[operation][1].format(i=instance),
                fields=fields,
            )
        result = await console.command(who, instance, operation, fields)
        return console.page(
            request,
            "result.html",
            status=200 if result["ok"] else 502,
            instance=instance,
            operation=operation,
            label=OPERATIONS[operation][0],
            result=result,
        )

    # ------------------------------------------------------------ silences

    async def add_silence(request: web.Request) -> web.StreamResponse:
        instance = instance_of(request)
        form = await request.post()
        try:
            hours = float(str(form.get("hours", "")))
        except ValueError:
            raise PageError(400, "the silence needs a duration in hours, e.g. 4") from None
        if not 0 < hours <= 24 * 90:
            raise PageError(400, "a silence lasts more than 0 and at most 2160 hours (90 days)")
        body: dict[str, Any] = {
            "instance": instance,
            "ends_at": (datetime.now(UTC) + timedelta(hours=hours)).isoformat(),
            "comment": str(form.get("comment", "")).strip() or "silenced from the console",
        }
        if form.get("alert"):
            body["alert"] = str(form["alert"])
        answer = await console.ask(
            request,
            "POST",
            f"{urls.alerting}/v1/silences",
            body=body,
            expect=(201,),
            refused="alerting refused the silence",
        )
        raise web.HTTPSeeOther(
            f"/instances/{quote(instance)}?" + urlencode({"done": f"silence {answer['id']} set"}) + "#alerts"
        )

    async def delete_silence(request: web.Request) -> web.StreamResponse:
        instance = instance_of(request)
        silence = request.match_info["silence"]
        url = f"{urls.alerting}/v1/silences/{quote(silence, safe='')}"
        await console.ask(request, "DELETE", url, expect=(204,), refused="alerting refused")
        raise web.HTTPSeeOther(
            f"/instances/{quote(instance)}?" + urlencode({"done": f"silence {silence} cleared"}) + "#alerts"
        )

    # ------------------------------------------------------------ the JSON admin API (bearer tokens)

    async def api_instances(request: web.Request) -> web.Response:
        return json_response(await snapshot(urls))

    async def api_action(request: web.Request) -> web.Response:
        who = identity(request)
        assert who is not None
        if request.content_type != "application/json":
            return problem(415, f"send the action as application/json; got {request.content_type or 'no type'}")
        try:
            instance = instance_of(request)
            body = await request.json()
            if not isinstance(body, dict) or not isinstance(body.get("operation"), str):
                raise BadRequest("send a JSON object with `operation` and its fields")
            operation = body.pop("operation")
            if operation not in OPERATIONS:
                raise BadRequest(f"unknown operation {operation!r}; one of {', '.join(OPERATIONS)}")
            agent_command(instance, operation, datetime.now(UTC), SOURCE, **body)
        except (BadRequest, ValueError) as exc:  # a body that is not JSON is a ValueError too
            return problem(400, str(exc))
        result = await console.command(who, instance, operation, body)
        return json_response(result, status=200 if result["ok"] else 502)

    router.add_get("/", overview)
    router.add_get("/fragments/overview", overview_fragment)
    router.add_get("/instances/{instance}", instance_page)
    router.add_get("/instances/{instance}/fragments/live", instance_fragment)
    router.add_get("/instances/{instance}/report.csv", report_csv)
    router.add_get("/instances/{instance}/whatif", whatif_page)
    router.add_post("/instances/{instance}/actions", action)
    router.add_post("/instances/{instance}/silences", add_silence)
    router.add_post("/instances/{instance}/silences/{silence}/delete", delete_silence)
    router.add_get("/api/v1/instances", api_instances)
    router.add_post("/api/v1/instances/{instance}/actions", api_action)
