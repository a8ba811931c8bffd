"""The monthly review as one PNG a manager reads at a glance, labelled in Chinese.

Drawn with matplotlib's Agg canvas (no display, no pyplot state) in the project's CJK font
(infra/fonts.py, shipped by a PyPI package), so the labels render the same everywhere.
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib
from matplotlib import font_manager
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator, PercentFormatter

from domain.report import MonthlyReport
from infra.fonts import cjk_font_path

CHANNEL_NAMES = {"sms": "短信", "wechat": "微信", "wecom": "企业微信", "voice": "语音电话",
                 "agent_call": "坐席外呼", "email": "电子邮件", "letter": "纸质信函"}
_ACCEPTED, _DELIVERED, _EVIDENCE, _CONVERSION = "#4c72b0", "#55a868", "#dd8452", "#8172b3"
_PAID, _LAPSED, _REINSTATED, _OPEN = "#55a868", "#c44e52", "#8172b3", "#8c8c8c"


def _font() -> str:
    """Register the bundled Chinese font once; its family name for rcParams."""
    path = str(cjk_font_path())
    if path not in {f.fname for f in font_manager.fontManager.ttflist}:
        font_manager.fontManager.addfont(path)
    return font_manager.FontProperties(fname=path).get_name()


def _ratio(value: float | None) -> float:
    return math.nan if value is None else value


def _channels(ax, report: MonthlyReport) -> None:
    rows = report.channels
    xs = range(len(rows))
    width = 0.38
    ax.set_title("本月各渠道通知：服务商受理率与确认送达率")
    accepted = ax.bar([x - width / 2 for x in xs], [r.accepted_rate or 0 for r in rows], width,
                      label="服务商受理率", color=_ACCEPTED)
    # A channel that never confirms delivery gets no bar, and says so: not a 0 %.
    delivered = ax.bar([x + width / 2 for x in xs],
                       [r.delivered_rate or 0 if r.confirms_delivery else 0 for r in rows],
                       width, label="确认送达率", color=_DELIVERED)
    ax.bar_label(accepted, [_percent(r.accepted_rate) for r in rows], fontsize=8)
    ax.bar_label(delivered, [_percent(r.delivered_rate) if r.confirms_delivery else "不适用"
                             for r in rows], fontsize=8)
    ax.set_xticks(list(xs), [f"{CHANNEL_NAMES.get(r.channel or '', r.channel)}\n"
                             f"{r.attempted:,} 条" for r in rows])
    ax.set_ylim(0, 1.15)
    ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    ax.legend(loc="upper right", fontsize=8, ncols=2)
    ax.set_xlabel("渠道下方为交给服务商发送的条数，即受理率的基数（无地址、内容不合规而未发出的"
                  "不计入）；\n"
                  "“不适用”：该渠道不回传送达确认（微信、企业微信、纸质信函、坐席外呼）",
                  fontsize=8, color="#555555")
    if not rows:
        ax.text(0.5, 0.5, "本月没有通知记录", ha="center", va="center", transform=ax.transAxes)


def _percent(value: float | None) -> str:
    return "无" if value is None else f"{value:.0%}"


def _funnel(ax, report: MonthlyReport) -> None:
    f = report.funnel
    steps = [("已发首次提醒", f.first_reminded, _ACCEPTED),
             ("宽限期内缴费", f.paid_in_grace, _PAID),
             ("保单失效", f.lapsed, _LAPSED),
             ("其中已复效", f.reinstated, _REINSTATED),
             ("其他原因终止", f.ended_otherwise, _OPEN),
             ("尚在跟进", f.open, _OPEN)]
    since_year, since_month = (f.since or report.month).split("-")
    ax.set_title(f"{since_year}年{int(since_month)}月以来发起催缴的保单：截至目前的结果")
    ys = range(len(steps))
    bars = ax.barh(list(ys), [n for _, n, _ in steps], color=[c for _, _, c in steps])
    ax.bar_label(bars, [f"{n} 件（{n / f.first_reminded:.0%}）" if f.first_reminded
                        else f"{n} 件" for _, n, _ in steps], padding=3, fontsize=9)
    ax.set_yticks(list(ys), [label for label, _, _ in steps])
    ax.invert_yaxis()
    ax.set_xlim(0, max(f.first_reminded, 1) * 1.3)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # counts: no half policies
    ax.set_xlabel("保单数（件）；按发起月份统计，含发起后各月的结果，故与本月数字不同")


def _months_axis(ax, report: MonthlyReport) -> range:
    """Every month of the window on the x axis, also those without a value to draw."""
    xs = range(len(report.trends))
    ax.set_xticks(list(xs), [t.month for t in report.trends])
    ax.set_xlim(-0.4, len(xs) - 0.6)
    return xs


def _trend_counts(ax, report: MonthlyReport) -> None:
    xs = _months_axis(ax, report)
    ax.set_title(f"近{len(xs)}个月趋势：当月发生的保单数（件）")
    for values, label, color in (([t.started for t in report.trends], "新发起催缴", _ACCEPTED),
                                 ([t.paid_in_grace for t in report.trends], "宽限期内缴费", _PAID),
                                 ([t.lapsed for t in report.trends], "保单失效", _LAPSED),
                                 ([t.reinstated for t in report.trends], "复效", _REINSTATED)):
        ax.plot(xs, values, marker="o", label=label, color=color)
    ax.set_ylim(bottom=0)
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(fontsize=8, ncols=2)


def _trend_rates(ax, report: MonthlyReport) -> None:
    xs = _months_axis(ax, report)
    ax.set_title(f"近{len(xs)}个月趋势：各项比率")
    for values, label, color in (
            ([t.accepted_rate for t in report.trends], "服务商受理率", _ACCEPTED),
            ([t.delivered_rate for t in report.trends], "确认送达率", _DELIVERED),
            ([t.evidence_rate for t in report.trends], "催告书送达有凭证", _EVIDENCE),
            ([t.conversion_rate for t in report.trends], "复效转化率", _CONVERSION)):
        ax.plot(xs, [_ratio(v) for v in values], marker="o", label=label, color=color)
    ax.set_ylim(0, 1.05)
    ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    ax.legend(fontsize=8, ncols=2, loc="best")


def _style():
    return matplotlib.rc_context({"font.family": [_font()], "axes.unicode_minus": False,
                                 "axes.spines.top": False, "axes.spines.right": False})


def chart(report: MonthlyReport) -> Figure:
    """Success per channel, the funnel, and the month-over-month trends, on one figure."""
    year, month = report.month.split("-")
    with _style():
        fig = Figure(figsize=(13, 8.5), layout="constrained")
        FigureCanvasAgg(fig)
        fig.suptitle(f"{year}年{int(month)}月 续期保费催缴月度报告", fontsize=15)
        axes = fig.subplots(2, 2)
        _channels(axes[0][0], report)
        _funnel(axes[0][1], report)
        _trend_counts(axes[1][0], report)
        _trend_rates(axes[1][1], report)
    return fig


def write_chart(report: MonthlyReport, path: Path) -> Path:
    """The chart as one PNG."""
    with _style():
        fig = chart(report)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, format="png", dpi=100)
    return path
