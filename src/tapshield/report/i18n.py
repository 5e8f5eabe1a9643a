"""The analysis report's words in English and Simplified Chinese (``--lang``).

Identifiers (incident ids, causes, scopes, codes) stay as the contracts spell
them; only the words around them are translated. An unknown key is an error,
so a template cannot show a blank.
"""

from __future__ import annotations

LANGS = ("en", "zh")

_T: dict[str, tuple[str, str]] = {
    "title": ("tapshield analysis report", "tapshield 分析报告"),
    "events": ("events", "事件数据"),
    "to": ("to", "至"),
    "generated": ("generated", "生成于"),
    "paged": ("incidents that paged (levels 1-3)", "已告警事件（一至三级）"),
    "never_succeeded": ("taps that never succeeded", "最终未成功的支付"),
    "not_paid": ("amount not paid (yuan)", "未支付金额（元）"),
    "fraud_refused": ("fraud refused ({n} attacks; not a loss)",
                      "拦截的欺诈（{n} 次攻击；不计损失）"),
    "notifications": ("paging notifications", "告警通知"),
    "analysed": ("events analysed", "已分析事件"),
    "most_severe": ("most severe incident", "最严重的事件"),
    "in": ("in", "范围"),
    "open": ("open", "进行中"),
    "closed": ("closed", "已结束"),
    "start": ("start", "开始"),
    "detected": ("detected", "发现"),
    "end": ("end", "结束"),
    "taps_never": ("taps never succeeded", "笔支付最终未成功"),
    "yuan_not_paid": ("yuan not paid", "元未支付"),
    "users": ("users", "用户"),
    "merchants": ("merchants", "商户"),
    "no_page": ("No incident paged.", "没有触发告警的事件。"),
    "incidents_paged": ("Incidents that paged", "已告警事件"),
    "level": ("level", "级别"),
    "incident": ("incident", "事件"),
    "when": ("when", "时间"),
    "scope": ("scope", "范围"),
    "everything": ("everything", "全部"),
    "cause": ("cause", "原因"),
    "failed_attempts": ("failed attempts", "失败尝试"),
    "failed_taps": ("failed taps", "失败支付"),
    "not_paid_short": ("not paid (yuan)", "未支付（元）"),
    "notices": ("Notices (level 4, recorded, not paged)", "提示（四级，已记录，未告警）"),
    "taps": ("taps", "笔"),
    "refused_not_loss": ("refused, {amount} yuan (stopped attackers: not a loss)",
                         "被拦截，{amount} 元（阻止了攻击者：不计损失）"),
    "yuan": ("yuan", "元"),
    "first_evidence": ("first evidence", "首条证据"),
    "alert_changes": ("Alert changes", "告警变化"),
    "alert_changes_n": ("{n} alert state changes (firing, escalated, resolved, ...)",
                        "{n} 次告警状态变化（触发、升级、解除……）"),
    "time": ("time", "时间"),
    "alert": ("alert", "告警"),
    "state": ("state", "状态"),
    "signal": ("signal", "信号"),
    "slice": ("slice", "切片"),
    "paged_col": ("paged", "已告警"),
    "whole_flow": ("whole flow", "全流程"),
    "yes": ("yes", "是"),
    "no": ("no", "否"),
    "more_alerts": ("{n} more alert changes in alerts.jsonl.",
                    "另有 {n} 条告警变化见 alerts.jsonl。"),
    "no_alert": ("No alert changed state.", "没有告警状态变化。"),
    "changes": ("Changes on record", "变更记录"),
    "kind": ("kind", "类型"),
    "component": ("component", "组件"),
    "version": ("version", "版本"),
    "until": ("until", "截至"),
    "note": ("note", "备注"),
    "footer": ("Figures are measured from the events (failed taps: a tap with a failing attempt "
               "in scope and no approved attempt at all). Money not paid counts outages only: a "
               "fraud attempt the risk engine refused is the engine working, not a loss.",
               "数据由事件计算（失败支付：范围内有失败尝试且没有任何成功尝试的支付）。未支付金额仅计故障："
               "风控拦截的欺诈是风控在正常工作，不是损失。"),
    "technical_pct": ("technical failure %", "技术失败 %"),
    "decline_pct": ("decline %", "拒绝 %"),
    "risk_decline_pct": ("risk decline %", "风控拒绝 %"),
    "rates_title": ("Failure and decline rates, whole flow", "失败率与拒绝率（全流程）"),
    "attempts_bucket": ("attempts per bucket", "每时段尝试次数"),
    "traffic": ("Traffic", "交易量"),
    "latency": ("Latency", "延迟"),
    "red": ("red", "红色"), "orange": ("orange", "橙色"), "yellow": ("yellow", "黄色"),
    "blue": ("blue", "蓝色"),
}


def tr(key: str, lang: str, **values: object) -> str:
    en, zh = _T[key]
    text = zh if lang == "zh" else en
    return text.format(**values) if values else text


def keys() -> frozenset[str]:
    return frozenset(_T)
