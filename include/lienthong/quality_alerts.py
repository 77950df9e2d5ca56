"""E-mail each group's lead library when a member's quality tier drops or its newest export is held (§III.2c).

The lead library controls its members' record quality; it hears about a problem the day it appears, in
Vietnamese, through the SMTP connection the period reminders use. Each (kind, batch, recipient) is sent once.
"""
from __future__ import annotations

import html
import logging
from dataclasses import dataclass, field

import sqlalchemy as sa

from lienthong import scorecard
from lienthong.registry import Registry, load_registry

log = logging.getLogger(__name__)

TIER_VI = "hạng chất lượng"


@dataclass
class Alert:
    recipient: str
    group_code: str
    lead_library: str
    subject: str
    body_html: str
    items: list[tuple[str, int, str]] = field(default_factory=list)  # (kind, batch_id, library_code)


def _held_batches(conn: sa.Connection) -> list[dict]:
    rows = conn.execute(sa.text(
        """SELECT library_code, batch_id, status_reason FROM marts.library_last_batch
           WHERE status = 'held'""")).mappings().all()
    return [dict(r) for r in rows]


def plan(engine: sa.Engine, registry: Registry | None = None) -> list[Alert]:
    """The alerts not sent yet, one e-mail per lead library and group."""
    registry = registry or load_registry()
    with engine.connect() as conn:
        events = [("tier_drop", d["batch_id"], d["library_code"],
                   f"{TIER_VI} giảm từ {d['previous_tier']} xuống {d['tier']}")
                  for d in scorecard.tier_drops(conn)]
        events += [("held_batch", h["batch_id"], h["library_code"],
                    "tệp xuất mới nhất bị tạm giữ, chưa nạp: " + (h["status_reason"] or ""))
                   for h in _held_batches(conn)]
        sent = {(kind, batch, to) for kind, batch, to in conn.execute(
            sa.text("SELECT kind, batch_id, recipient FROM quality.alert"))}
    alerts: list[Alert] = []
    for group in registry.active_groups():
        members = set(group.member_codes())
        recipient = registry.reporting.email_of(group.lead_library)
        mine = [e for e in events if e[2] in members and recipient and (e[0], e[1], recipient) not in sent]
        if not mine:
            continue
        lead = registry.libraries[group.lead_library].name
        rows = "".join(f"<tr><td>{html.escape(code)}</td><td>{html.escape(registry.libraries[code].name)}</td>"
                       f"<td>{html.escape(text)}</td></tr>" for _, _, code, text in mine)
        body = (f"<p>Kính gửi {html.escape(lead)}, thư viện chủ trì {html.escape(group.name)},</p>"
                f"<p>Hệ thống Liên thông thư viện ghi nhận vấn đề về chất lượng dữ liệu của các thư viện thành viên:"
                f"</p><table border='1'><tr><th>Mã</th><th>Thư viện</th><th>Vấn đề</th></tr>{rows}</table>"
                f"<p>Danh sách lỗi cần sửa của từng thư viện: lệnh <code>lienthong quality fixlist</code> hoặc thư "
                f"mục danh sách sửa lỗi của nhóm.</p><p>Thư này được gửi tự động.</p>")
        subject = f"[Liên thông thư viện] Chất lượng dữ liệu nhóm {group.name}: {len(mine)} vấn đề mới"
        alerts.append(Alert(recipient, group.code, group.lead_library, subject, body,
                            [(kind, batch, code) for kind, batch, code, _ in mine]))
    return alerts


def send(engine: sa.Engine, registry: Registry | None = None) -> dict:
    """Send the planned alerts; without a configured SMTP connection they are logged and left for later."""
    from airflow.providers.smtp.hooks.smtp import SmtpHook

    from lienthong.submissions import smtp_conn_id
    from lienthong.transports.connections import ConnectionProblem, get_connection

    registry = registry or load_registry()
    alerts = plan(engine, registry)
    if not alerts:
        return {"sent": [], "pending": 0}
    conn_id = smtp_conn_id(registry)
    try:
        get_connection(conn_id)
    except ConnectionProblem:
        log.warning("no SMTP connection %r: %d quality alert(s) not sent, kept for the next run", conn_id,
                    len(alerts))
        return {"sent": [], "pending": len(alerts), "smtp_connection": conn_id}
    sent = []
    with SmtpHook(smtp_conn_id=conn_id) as hook:
        for alert in alerts:
            hook.send_email_smtp(to=alert.recipient, subject=alert.subject, html_content=alert.body_html,
                                 from_email=registry.reporting.sender or None)
            with engine.begin() as conn:
                conn.execute(sa.text(
                    """INSERT INTO quality.alert (kind, batch_id, library_code, recipient, group_code)
                       VALUES (:kind, :batch, :library, :to, :group) ON CONFLICT DO NOTHING"""),
                    [{"kind": kind, "batch": batch, "library": code, "to": alert.recipient, "group": alert.group_code}
                     for kind, batch, code in alert.items])
            sent.append({"to": alert.recipient, "group": alert.group_code, "problems": len(alert.items)})
            log.info("quality alert for group %s sent to its lead library (%d problems)", alert.group_code,
                     len(alert.items))
    return {"sent": sent, "pending": 0}
