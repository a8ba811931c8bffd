"""The public notice of policies whose holders the insurer cannot reach (MISSION section 3):
masked entries only, as a web page and as JSON for the website and the app."""

from __future__ import annotations

from datetime import date
from html import escape

import asyncpg
from aiohttp import web

from domain.content import InsurerContact, mask_policy_number, short_name
from domain.plan import TZ
from infra import journey_records


async def notice_entries(conn: asyncpg.Connection) -> list[dict[str, str]]:
    """Masked: the policy number's series and tail, the holder as surname and honorific
    (an organisation's name is not personal data); never an amount or a product."""
    return [{"policy": mask_policy_number(r.policy_number),
             "holder": r.name if r.is_organisation else short_name(r.name, r.gender),
             "listed_on": r.listed_at.astimezone(TZ).date().isoformat()}
            for r in await journey_records.listed(conn)]


class PublicNotice:
    def __init__(self, pool: asyncpg.Pool, insurer: InsurerContact | None = None):
        self._pool = pool
        self._insurer = insurer or InsurerContact()

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/public/unreachable", self.page)
        app.router.add_get("/public/unreachable.json", self.json)

    async def _entries(self) -> list[dict[str, str]]:
        async with self._pool.acquire() as conn:
            return await notice_entries(conn)

    async def json(self, request: web.Request) -> web.Response:
        i = self._insurer
        return web.json_response({"insurer": i.legal_name, "hotline": i.hotline,
                                  "as_of": date.today().isoformat(),
                                  "entries": await self._entries()})

    async def page(self, request: web.Request) -> web.Response:
        i = self._insurer
        rows = "".join(f"<tr><td>{escape(e['policy'])}</td><td>{escape(e['holder'])}</td>"
                       f"<td>{escape(e['listed_on'])}</td></tr>" for e in await self._entries())
        html = (
            "<!doctype html><html lang='zh-CN'><head><meta charset='utf-8'>"
            f"<title>{escape(i.short_name)}：无法联系的保单持有人公告</title></head><body>"
            f"<h1>无法联系的保单持有人公告</h1><p>{escape(i.legal_name)}无法通过预留的联系方式"
            "与以下保单的投保人取得联系。如您是下列保单的投保人，请尽快与我们联系，或到服务网点"
            f"更新联系方式。客服热线：{escape(i.hotline)}；服务网点：{escape(i.branch_address)}"
            f"（{escape(i.branch_hours)}）。</p><table><tr><th>保单号</th><th>投保人</th>"
            f"<th>公告日期</th></tr>{rows or '<tr><td colspan=3>暂无</td></tr>'}</table>"
            "</body></html>")
        return web.Response(text=html, content_type="text/html")
