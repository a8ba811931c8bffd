"""The console's HTTP side: sign-in, finding a policy, the journey page and its actions,
the task queue. Every page but the sign-in needs a session, every form its CSRF token,
and every page that shows a customer's data is logged."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from urllib.parse import quote, urlencode, urlsplit

import asyncpg
import jinja2
from aiohttp import web
from pydantic import TypeAdapter, ValidationError
from temporalio.service import RPCError

from domain.content.masking import mask_phone, mask_policy_number, short_name
from domain.models import Gender, PolicyNumber
from domain.plan import TZ
from infra import console_queries as q
from infra import notes
from infra.agent_tasks import TaskError, TaskView, get_task, list_tasks
from infra.deliveries import journey_records
from infra.print_queue import letter_pdf
from infra.tasks import OUTCOMES, closed_journey, complete_task
from infra.tasks import take_task as take_task_row
from web.console import actions, auth, timeline, words
from web.console.journey_port import JourneyBusy, JourneyPort

log = logging.getLogger("lapse.console")

HERE = Path(__file__).resolve().parent
SESSION_COOKIE = "lapse_console"
LOGIN_COOKIE = "lapse_console_login"  # the sign-in form's CSRF token (double submit)
NOTE_MAX = 500
# The journey's answer to a signal usually shows within a second; the page waits this
# long before showing it, then the browser keeps asking (htmx) until it shows.
ANSWER_WAIT_SECONDS = 5.0
ANSWER_GIVE_UP_SECONDS = 60.0
_POLICY = TypeAdapter(PolicyNumber)
# No inline script or style anywhere: the policy forbids both.
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
       "object-src 'none'; frame-ancestors 'none'; form-action 'self'; "
       "base-uri 'none'")


@dataclass(frozen=True)
class Console:
    pool: asyncpg.Pool
    port: JourneyPort
    rules: auth.SessionRules
    secure_cookies: bool = True


CONSOLE = web.AppKey("console", Console)
AGENT = web.RequestKey("agent", auth.Agent)

_templates = jinja2.Environment(
    loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True,
    undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
_templates.filters.update(at=words.at, day=words.day, money=words.money,
                          milestone=words.milestone, mask_phone=mask_phone)
_templates.globals.update(words=words)


def _page(request: web.Request, template: str, *, code: int = 200, **context) -> web.Response:
    agent = request.get(AGENT)
    html = _templates.get_template(template).render(agent=agent, path=request.path, **context)
    return web.Response(text=html, status=code, content_type="text/html")


def _refusal(request: web.Request, status: int, message: str, back: str | None = None):
    return _page(request, "refused.j2", code=status, message=message, back=back)


def _redirect(location: str) -> web.Response:
    """A See Other that can carry cookies (a raised HTTPSeeOther is for the others)."""
    return web.Response(status=303, headers={"Location": location})


def _console(request: web.Request) -> Console:
    return request.app[CONSOLE]


# --- middlewares -------------------------------------------------------------------------------

_OPEN = ("/login", "/static/", "/healthz", "/favicon.ico")


def _cookie(response: web.StreamResponse, console: Console, name: str, value: str,
            path: str = "/") -> None:
    response.set_cookie(name, value, path=path, httponly=True, samesite="Strict",
                        secure=console.secure_cookies)


@web.middleware
async def _headers(request: web.Request, handler):
    try:
        response = await handler(request)
    except web.HTTPNotFound:
        response = _refusal(request, 404, "没有找到这个页面、保单或任务。", back="/find")
    except RPCError:
        log.warning("Temporal did not answer a console request")
        response = _refusal(request, 503, "暂时无法连接旅程服务（Temporal），请稍后再试。")
    response.headers.setdefault("Content-Security-Policy", CSP)
    response.headers["X-Content-Type-Options"] = "nosniff"
    # Not no-referrer: with it browsers send "Origin: null" on our own forms. same-origin
    # still keeps our URLs (they name policies) from other sites.
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers["X-Frame-Options"] = "DENY"
    if not request.path.startswith("/static/"):
        response.headers["Cache-Control"] = "no-store"  # pages hold personal data
    return response


@web.middleware
async def _session(request: web.Request, handler):
    """Find the signed-in agent; refuse everything else without one, and any form whose
    CSRF token (or origin) is not this session's."""
    console = _console(request)
    if request.path.startswith(_OPEN):
        return await handler(request)
    agent = await auth.session_agent(console.pool, request.cookies.get(SESSION_COOKIE),
                                     console.rules)
    if agent is None:
        if request.method == "GET" and "HX-Request" not in request.headers:
            raise web.HTTPSeeOther("/login?" + urlencode({"next": request.path_qs}))
        return _refusal(request, 401, "请先登录。", back="/login")
    request[AGENT] = agent
    if request.method == "POST":
        form = await request.post()
        if not _same_origin(request) or not auth.same_token(form.get("csrf"),
                                                            agent.csrf_token):
            log.warning("console form refused: bad CSRF token or origin")
            return _refusal(request, 403, "表单已失效或来源不明，操作未执行。请重新打开页面再试。")
    return await handler(request)


def _same_origin(request: web.Request) -> bool:
    # By host only: behind a TLS proxy the browser's https origin reaches us as http.
    origin = request.headers.get("Origin")
    return origin is None or urlsplit(origin).netloc == request.host


# --- signing in and out ---------------------------------------------------------------------


def _next(value: str | None) -> str:
    # Only a path on this site: never an address elsewhere.
    if value and value.startswith("/") and not value.startswith("//") and "\\" not in value:
        return value
    return "/find"


def _login_page(request: web.Request, message: str | None = None,
                status: int = 200) -> web.Response:
    # One token per browser until it signs in: a second sign-in page (another tab, or a
    # redirect for a stray request) must not void the form already shown.
    token = request.cookies.get(LOGIN_COOKIE, "")
    if not auth.well_formed(token):
        token = auth.new_token()
    response = _page(request, "login.j2", code=status, csrf=token, message=message,
                     next=_next(request.query.get("next")))
    _cookie(response, _console(request), LOGIN_COOKIE, token, path="/login")
    return response


async def login_form(request: web.Request) -> web.Response:
    return _login_page(request)


async def login(request: web.Request) -> web.Response:
    console = _console(request)
    form = await request.post()
    if not _same_origin(request) or not auth.same_token(form.get("csrf"),
                                                        request.cookies.get(LOGIN_COOKIE)):
        log.warning("console sign-in refused: bad CSRF token or origin")
        return _refusal(request, 403, "登录表单已失效，请重新打开登录页。", back="/login")
    name = str(form.get("name", "")).strip()
    try:
        token, agent = await auth.sign_in(console.pool, name, str(form.get("password", "")),
                                          console.rules)
    except auth.SignInRefused as refused:
        async with console.pool.acquire() as conn:
            await q.audit(conn, name if auth.NAME.match(name) else "?", "sign_in", "refused")
        return _login_page(request, str(refused), status=401)
    async with console.pool.acquire() as conn:
        await q.audit(conn, agent.name, "sign_in", "ok")
    response = _redirect(_next(str(form.get("next", ""))))
    _cookie(response, console, SESSION_COOKIE, token)
    response.del_cookie(LOGIN_COOKIE, path="/login")
    return response


async def logout(request: web.Request) -> web.Response:
    console = _console(request)
    await auth.sign_out(console.pool, request.cookies[SESSION_COOKIE])
    async with console.pool.acquire() as conn:
        await q.audit(conn, request[AGENT].name, "sign_out", "ok")
    response = _redirect("/login")
    response.del_cookie(SESSION_COOKIE, path="/")
    return response


async def healthz(request: web.Request) -> web.Response:
    return web.Response(text="ok")


# --- finding a policy -------------------------------------------------------------------------


def _policy_number(text: str) -> str | None:
    try:
        return _POLICY.validate_python(text.strip().upper())
    except ValidationError:
        return None


def _masked(match: q.PhoneMatch) -> dict[str, str]:
    holder = match.name if match.is_organisation else short_name(
        match.name, Gender(match.gender) if match.gender else None)
    return {"policy": mask_policy_number(match.policy_number), "holder": holder,
            "product": match.product_name, "phone": mask_phone(match.mobile),
            "role": words.word(words.RECIPIENT, match.role)}


async def find(request: web.Request) -> web.Response:
    console = _console(request)
    agent = request[AGENT]
    number_text = request.query.get("policy", "").strip()
    tail = request.query.get("phone", "").strip()
    message, matches = None, None
    if number_text:
        number = _policy_number(number_text)
        async with console.pool.acquire() as conn:
            found = number and await q.policy(conn, number)
        if found:
            raise web.HTTPSeeOther(f"/policy/{quote(number)}")
        message = "没有这个保单号的保单。"
    elif tail:
        if len(tail) != 4 or not tail.isdigit():
            message = "请输入手机号码的后 4 位数字。"
        else:
            async with console.pool.acquire() as conn:
                found = await q.by_phone_tail(conn, tail)
                # Masked, but still about customers: on record like any page of their data.
                await q.log_page_view(conn, agent.name, [m.policy_number for m in found],
                                      "phone_search")
            matches = [_masked(m) for m in found]
            message = None if matches else "没有手机号码以这 4 位结尾的客户。"
    return _page(request, "find.j2", message=message, matches=matches, tail=tail,
                 number=number_text)


async def open_match(request: web.Request) -> web.Response:
    """Open a phone search's result by its place in the list, so that the list itself
    carries only masked numbers."""
    form = await request.post()
    tail, pick = str(form.get("phone", "")), str(form.get("pick", ""))
    if not (len(tail) == 4 and tail.isdigit() and pick.isdigit()):
        return _refusal(request, 400, "查询条件不完整。", back="/find")
    async with _console(request).pool.acquire() as conn:
        found = await q.by_phone_tail(conn, tail)
    if int(pick) >= len(found):
        return _refusal(request, 404, "结果已变化，请重新查询。", back="/find")
    raise web.HTTPSeeOther(f"/policy/{quote(found[int(pick)].policy_number)}")


# --- the journey page ---------------------------------------------------------------------------


async def _policy_or_404(request: web.Request) -> q.PolicyRow:
    number = _policy_number(request.match_info["policy"])
    if number is not None:
        async with _console(request).pool.acquire() as conn:
            row = await q.policy(conn, number)
        if row is not None:
            return row
    raise web.HTTPNotFound()


async def journey_page(request: web.Request) -> web.Response:
    console = _console(request)
    agent = request[AGENT]
    policy = await _policy_or_404(request)
    number = policy.policy_number
    busy = False
    try:
        status = await console.port.status(number)
    except JourneyBusy:
        status, busy = None, True
    link, entries = None, []
    async with console.pool.acquire() as conn:
        if status is not None:
            link = await console.port.link(number)
            entries = timeline.build(status, await journey_records(conn, link.records_key))
        tasks = _offered(await list_tasks(conn, policy_number=number))
        await q.log_page_view(conn, agent.name, [number], "journey")
        answer = await _answer_context(conn, request, number, status)
    return _page(request, "journey.j2", policy=policy, status=status, busy=busy, link=link,
                 entries=entries, tasks=tasks, answer=answer,
                 open_inquiries=timeline.inquiries(status), holder=_holder(policy),
                 new_reference=actions.new_reference, Action=actions.Action)


def _holder(policy: q.PolicyRow) -> str:
    return policy.name + ("" if policy.is_organisation or not policy.gender
                          else "（" + ("男" if policy.gender == "M" else "女") + "）")


async def _answer_context(conn, request: web.Request, number: str, status) -> dict | None:
    """The banner with the journey's answer to this agent's last action, if asked for."""
    ref = request.query.get("answer", "")
    entry = await q.audit_entry(conn, int(ref)) if ref.isdigit() else None
    if (entry is None or entry.policy_number != number or entry.agent != request[AGENT].name
            or entry.action not in {a.value for a in actions.Action}):
        return None
    action = actions.Action(entry.action)
    if entry.result != "sent":
        return {"id": entry.audit_id, "title": actions.TITLE[action], "done": True,
                "failed": True, "text": "旅程未在运行：信号未发送。"}
    done = actions.settled(action, entry.reference, status)
    waited = (datetime.now(TZ) - entry.at).total_seconds()
    text = actions.answer(action, entry.reference, status)
    if not done and waited > ANSWER_GIVE_UP_SECONDS:
        done, text = True, "旅程尚未显示处理结果，请稍后刷新页面查看。"
    return {"id": entry.audit_id, "title": actions.TITLE[action], "done": done,
            "failed": False, "text": text}


async def answer_fragment(request: web.Request) -> web.Response:
    """The answer banner alone, for the page to ask again (htmx) until the journey shows
    it; then the whole page reloads with the journey's new state."""
    console = _console(request)
    policy = await _policy_or_404(request)
    try:
        status = await console.port.status(policy.policy_number)
    except JourneyBusy:
        status = None
    async with console.pool.acquire() as conn:
        answer = await _answer_context(conn, request, policy.policy_number, status)
    if answer is None:
        raise web.HTTPNotFound()
    response = _page(request, "answer.j2", answer=answer, policy=policy)
    if answer["done"]:
        response.headers["HX-Refresh"] = "true"
    return response


async def journey_action(request: web.Request) -> web.Response:
    console = _console(request)
    agent = request[AGENT]
    policy = await _policy_or_404(request)
    number = policy.policy_number
    back = f"/policy/{quote(number)}"
    form = await request.post()
    fields = {k: str(v) for k, v in form.items() if isinstance(v, str)}
    try:
        status = await console.port.status(number)
        req = actions.parse(request.match_info["action"], fields, status)
    except (actions.ActionRefused, JourneyBusy) as refused:
        message = str(refused) if isinstance(refused, actions.ActionRefused) else \
            "旅程正在规划中，请稍后再试。"
        return _refusal(request, 409, f"操作未执行：{message}", back=back)
    if fields.get("confirm") != "yes":
        return _page(request, "confirm.j2", title=actions.TITLE[req.action],
                     rows=[("保单", number), *req.summary()], fields=req.fields(),
                     target=request.path, back=back)
    note_id = None
    if req.note:
        # The note stays in PostgreSQL; the journey gets its id, never the text.
        async with console.pool.acquire() as conn:
            note_id = await notes.keep_note(
                conn, number, "inquiry_handled" if req.action is actions.Action.HANDLED
                else "reinstatement_decided", req.reference, req.note, written_by=agent.name)
    running = await actions.send(console.port, number, req, datetime.now(TZ), note_id)
    async with console.pool.acquire() as conn:
        audit_id = await q.audit(conn, agent.name, req.action.value,
                                 "sent" if running else "journey_not_running",
                                 policy_number=number, reference=req.reference,
                                 detail=req.detail)
    if running:
        await _wait_for_answer(console.port, number, req)
    raise web.HTTPSeeOther(f"{back}?answer={audit_id}#answer")


async def _wait_for_answer(port: JourneyPort, number: str, req: actions.Request) -> None:
    # Nothing tells us when a signal has been handled: ask the journey until it shows.
    deadline = asyncio.get_running_loop().time() + ANSWER_WAIT_SECONDS
    while asyncio.get_running_loop().time() < deadline:
        try:
            if actions.settled(req.action, req.reference, await port.status(number)):
                return
        except JourneyBusy:
            pass
        await asyncio.sleep(0.1)


async def letter(request: web.Request) -> web.Response:
    console = _console(request)
    policy = await _policy_or_404(request)
    async with console.pool.acquire() as conn:
        pdf = await letter_pdf(conn, request.query.get("id", ""), policy.policy_number)
        if pdf is None:
            raise web.HTTPNotFound()
        await q.log_page_view(conn, request[AGENT].name, [policy.policy_number], "letter")
    # The page policy's object-src 'none' would keep the browser's PDF viewer out.
    return web.Response(body=pdf, content_type="application/pdf",
                        headers={"Content-Disposition": 'inline; filename="letter.pdf"',
                                 "Content-Security-Policy": "frame-ancestors 'none'"})


# --- the task queue -----------------------------------------------------------------------------


def _offered(tasks: list[TaskView]) -> list[TaskView]:
    """The tasks of journeys still open (a closed journey's tasks are not offered)."""
    return [t for t in tasks if closed_journey(t) is None]


async def task_queue(request: web.Request) -> web.Response:
    console = _console(request)
    async with console.pool.acquire() as conn:
        tasks = _offered(await list_tasks(conn))
        done = await _done_context(conn, request)
    return _page(request, "tasks.j2", tasks=tasks, done=done)


async def _done_context(conn, request: web.Request) -> dict | None:
    ref = request.query.get("done", "")
    entry = await q.audit_entry(conn, int(ref)) if ref.isdigit() else None
    if entry is None or entry.agent != request[AGENT].name or entry.action != "task_completed":
        return None
    told = {"journey_not_running": "旅程已不在运行，未通知旅程。", "none": ""}.get(
        entry.result, words.word(words.SIGNAL, entry.result) + "。")
    return {"task": entry.reference, "outcome": words.word(words.TASK_OUTCOME, entry.detail),
            "told": told}


async def _task_or_404(conn, task_id: str) -> TaskView:
    try:
        return await get_task(conn, task_id)
    except TaskError:
        raise web.HTTPNotFound() from None


async def task_page(request: web.Request) -> web.Response:
    console = _console(request)
    agent = request[AGENT]
    async with console.pool.acquire() as conn:
        task = await _task_or_404(conn, request.query.get("id", ""))
        closed = closed_journey(task) is not None
        mine = task.taken_by == agent.name and task.status == "taken"
        customer = None
        if mine and not closed:
            # The call script and the customer's details: only for the agent who took it.
            customer = await q.policy(conn, task.policy_number)
            await q.log_page_view(conn, agent.name, [task.policy_number], "task")
    return _page(request, "task.j2", task=task, mine=mine, closed=closed, customer=customer,
                 outcomes=OUTCOMES.get(task.kind, ()))


async def take_task(request: web.Request) -> web.Response:
    console = _console(request)
    agent = request[AGENT]
    task_id = str((await request.post()).get("task_id", ""))
    async with console.pool.acquire() as conn:
        task = await _task_or_404(conn, task_id)
        back = "/tasks/task?" + urlencode({"id": task_id})
        if closed_journey(task):
            return _refusal(request, 409, "该旅程已结束，任务不再提供。", back="/tasks")
        if task.taken_by not in (None, agent.name):
            return _refusal(request, 409, f"该任务已由 {task.taken_by} 领取。", back="/tasks")
        try:
            await take_task_row(conn, task_id, agent.name)
        except TaskError as err:
            return _refusal(request, 409, f"无法领取：{err}", back="/tasks")
        await q.audit(conn, agent.name, "task_taken", "ok", policy_number=task.policy_number,
                      reference=task_id)
    raise web.HTTPSeeOther(back)


async def finish_task(request: web.Request) -> web.Response:
    console = _console(request)
    agent = request[AGENT]
    form = await request.post()
    task_id = str(form.get("task_id", ""))
    outcome, note = str(form.get("outcome", "")), str(form.get("note", "")).strip()
    back = "/tasks/task?" + urlencode({"id": task_id})
    async with console.pool.acquire() as conn:
        task = await _task_or_404(conn, task_id)
    if task.status != "taken" or task.taken_by != agent.name:
        return _refusal(request, 409, "请先领取该任务。", back=back)
    if outcome not in OUTCOMES.get(task.kind, ()):
        return _refusal(request, 400, "请选择处理结果。", back=back)
    if len(note) > NOTE_MAX:
        return _refusal(request, 400, f"备注最多 {NOTE_MAX} 字。", back=back)
    if form.get("confirm") != "yes":
        rows = [("任务", words.word(words.TASK_KIND, task.kind)), ("保单", task.policy_number),
                ("结果", words.word(words.TASK_OUTCOME, outcome))] + ([("备注", note)] if note
                                                                      else [])
        return _page(request, "confirm.j2", title="完成任务", rows=rows, target=request.path,
                     fields={"task_id": task_id, "outcome": outcome, "note": note}, back=back)
    try:
        done = await complete_task(console.pool, console.port.journeys, task_id, outcome,
                                   agent.name, note)
    except TaskError as err:
        return _refusal(request, 409, f"无法完成：{err}", back=back)
    result = done.signal or ("none" if done.journey_running else "journey_not_running")
    async with console.pool.acquire() as conn:
        audit_id = await q.audit(conn, agent.name, "task_completed", result,
                                 policy_number=task.policy_number, reference=task_id,
                                 detail=outcome)
    raise web.HTTPSeeOther(f"/tasks?done={audit_id}")


async def home(request: web.Request) -> web.Response:
    raise web.HTTPSeeOther("/find")


def build_console(pool: asyncpg.Pool, port: JourneyPort, *,
                  rules: auth.SessionRules | None = None,
                  secure_cookies: bool = True) -> web.Application:
    app = web.Application(middlewares=[_headers, _session], client_max_size=64 * 1024)
    app[CONSOLE] = Console(pool, port, rules or auth.SessionRules(), secure_cookies)
    r = app.router
    r.add_get("/", home)
    r.add_get("/healthz", healthz)
    r.add_get("/login", login_form)
    r.add_post("/login", login)
    r.add_post("/logout", logout)
    r.add_get("/find", find)
    r.add_post("/find/open", open_match)
    r.add_get("/policy/{policy}", journey_page)
    r.add_get("/policy/{policy}/answer", answer_fragment)
    r.add_post("/policy/{policy}/actions/{action}", journey_action)
    r.add_get("/policy/{policy}/letter", letter)
    r.add_get("/tasks", task_queue)
    r.add_get("/tasks/task", task_page)
    r.add_post("/tasks/take", take_task)
    r.add_post("/tasks/complete", finish_task)
    r.add_static("/static", HERE / "static")
    return app
