"""English and Simplified Chinese for every console page.

The console follows the browser (``Accept-Language``); ``?lang=en|zh`` overrides
it and is remembered in a cookie. A missing translation is a test failure, not a
blank: :func:`t` raises on an unknown key.
"""

from __future__ import annotations

LANGS = ("en", "zh")

_T: dict[str, tuple[str, str]] = {
    "app": ("tapshield console", "tapshield 控制台"),
    "skip": ("Skip to content", "跳到正文"),
    "now": ("Now", "当前"),
    "incidents": ("Incidents", "事件"),
    "incident": ("Incident", "事件"),
    "impact": ("Impact", "影响"),
    "risk": ("Risk", "风控"),
    "passkeys": ("Passkeys", "通行密钥"),
    "sign_in": ("Sign in", "登录"),
    "sign_out": ("Sign out", "退出"),
    "signed_in_as": ("Signed in as", "当前用户"),
    "via_passkey": ("passkey", "通行密钥"),
    "via_key": ("API key", "API 密钥"),
    "sign_in_passkey": ("Sign in with a passkey", "使用通行密钥登录"),
    "sign_in_key": ("Or sign in with an API key", "或使用 API 密钥登录"),
    "api_key": ("API key", "API 密钥"),
    "key_help": ("The key from `tapshield keys create`; it is checked once and never stored "
                 "in the browser.",
                 "由 `tapshield keys create` 生成；仅校验一次，不会保存在浏览器中。"),
    "bad_key": ("Unknown or disabled API key.", "API 密钥无效或已停用。"),
    "no_console_role": ("This key's role has no console access.", "该密钥的角色无权使用控制台。"),
    "passkey_failed": ("Passkey sign-in failed.", "通行密钥登录失败。"),
    "register_passkey": ("Register a passkey on this device", "在此设备上注册通行密钥"),
    "passkey_needed": ("Actions need a passkey sign-in (strong verification).",
                       "操作需要使用通行密钥登录（强验证）。"),
    "your_passkeys": ("Passkeys of this key", "此密钥的通行密钥"),
    "no_passkeys": ("No passkey yet.", "尚无通行密钥。"),
    "created": ("created", "创建于"),
    "last_used": ("last used", "最近使用"),
    "live": ("live", "实时"),
    "reconnecting": ("reconnecting…", "重新连接中…"),
    "as_of": ("data as of", "数据截至"),
    "success_rate": ("National success rate", "全国成功率"),
    "expected": ("expected", "预期"),
    "traffic": ("Traffic", "交易量"),
    "taps_per_min": ("taps per minute", "每分钟交易笔数"),
    "technical_rate": ("Technical failure rate", "技术失败率"),
    "open_incidents": ("Open incidents", "未结束事件"),
    "recent_incidents": ("Recent incidents", "近期事件"),
    "no_open": ("No open incident.", "没有未结束的事件。"),
    "channel_health": ("Channel health by province", "各省渠道健康状况"),
    "provinces_failing": ("Provinces with a failing channel", "有渠道故障的省份"),
    "health_ok": ("healthy", "正常"),
    "health_down": ("failing", "故障"),
    "health_trial": ("recovering", "恢复中"),
    "health_none": ("no traffic", "无交易"),
    "level": ("level", "级别"),
    "level_1": ("L1 red", "一级 红色"),
    "level_2": ("L2 orange", "二级 橙色"),
    "level_3": ("L3 yellow", "三级 黄色"),
    "level_4": ("L4 blue", "四级 蓝色"),
    "notices": ("notices (level 4, not paged)", "提示（四级，未告警）"),
    "notices_of": ("notices", "条提示"),
    "show": ("show", "展开"),
    "status": ("status", "状态"),
    "open": ("open", "进行中"),
    "closed": ("closed", "已结束"),
    "started": ("started", "开始"),
    "detected": ("detected", "发现"),
    "ended": ("ended", "结束"),
    "scope": ("Scope", "范围"),
    "everything": ("everything", "全部"),
    "cause": ("Cause", "原因"),
    "confidence": ("confidence", "置信度"),
    "evidence": ("Evidence", "证据"),
    "failed_payments": ("failed payments", "失败支付"),
    "failed_attempts": ("failed attempts", "失败尝试"),
    "users": ("users", "用户"),
    "merchants": ("merchants", "商户"),
    "money_lost": ("not paid (yuan)", "未支付金额（元）"),
    "failover_saved": ("Saved by retry or failover", "重试或切换挽回"),
    "failover_saved_help": ("payments that hit a failure in scope and still succeeded",
                            "在范围内遇到失败但最终成功的支付"),
    "yuan": ("yuan", "元"),
    "level_changes": ("Level changes", "级别变化"),
    "timeline": ("Timeline", "时间线"),
    "handling": ("Handling", "处置"),
    "acknowledged": ("acknowledged", "已确认"),
    "not_acknowledged": ("not acknowledged", "未确认"),
    "assignee": ("assignee", "负责人"),
    "resolved": ("resolved", "已解决"),
    "acknowledge": ("Acknowledge", "确认"),
    "assign": ("Assign", "指派"),
    "note": ("Note", "备注"),
    "resolve": ("Resolve", "解决"),
    "silence": ("Silence", "静默"),
    "silence_minutes": ("minutes", "分钟"),
    "history": ("History", "记录"),
    "response": ("Response: lifecycle, notices, partner updates",
                 "响应：生命周期、通知、合作方更新"),
    "done": ("Done.", "已完成。"),
    "failed": ("Failed", "失败"),
    "all": ("all", "全部"),
    "filter": ("Filter", "筛选"),
    "export_csv": ("Export CSV", "导出 CSV"),
    "borrowers_hit": ("Borrowers hit", "受影响借款人"),
    "merchants_hit": ("Merchants hit", "受影响商户"),
    "net_lost_sales": ("net lost sales (yuan)", "净损失销售额（元）"),
    "exposure": ("exposure at risk (yuan)", "风险敞口（元）"),
    "operational_stress": ("operational stress", "经营性压力"),
    "breaches_caused": ("covenant breaches caused", "引发的契约违约"),
    "borrower": ("borrower", "借款人"),
    "region": ("region", "地区"),
    "industry": ("industry", "行业"),
    "dscr": ("DSCR before → after", "偿债覆盖率 前 → 后"),
    "covenant": ("covenant", "契约"),
    "liquidity_gap": ("liquidity gap (yuan)", "流动性缺口（元）"),
    "days_to_miss": ("days to a missed payment", "距首次逾期天数"),
    "actions": ("Recommended actions", "建议措施"),
    "label": ("label", "归类"),
    "lost_net": ("lost (yuan)", "损失（元）"),
    "regulatory": ("Regulatory classification", "监管分类"),
    "dora": ("EU DORA", "欧盟 DORA"),
    "pboc": ("PBoC grade", "人民银行分级"),
    "major": ("major", "重大"),
    "not_major": ("not major", "非重大"),
    "no_impact": ("No impact file is configured: run `tapshield analyze --portfolio` and set "
                  "console.impact_file.",
                  "未配置影响文件：请运行 `tapshield analyze --portfolio` "
                  "并设置 console.impact_file。"),
    "only_stressed": ("only stressed", "仅压力"),
    "search": ("search", "搜索"),
    "rows_shown": ("rows shown", "行"),
    "decisions": ("Decisions", "决策"),
    "decision_rates": ("Decision rates", "决策比例"),
    "rules": ("Rules", "规则"),
    "shadow": ("Shadow results", "影子模式结果"),
    "misfire": ("Misfire guard", "误伤保护"),
    "no_risk": ("No decisions recorded yet.", "尚无决策记录。"),
    "no_data": ("no data", "无数据"),
    "forbidden": ("Your role may not see this page.", "您的角色无权查看此页面。"),
    "not_found": ("Not found.", "未找到。"),
    "language": ("Language", "语言"),
    "minutes": ("min", "分钟"),
    "why_red": ("Most severe first", "最严重的优先"),
}


def t(key: str, lang: str) -> str:
    en, zh = _T[key]
    return zh if lang == "zh" else en


def negotiate(accept_language: str | None, override: str | None = None) -> str:
    """``zh`` when the browser prefers any Chinese, else ``en``; ``override`` wins."""
    if override in LANGS:
        return str(override)
    best, best_q = "en", -1.0
    for part in (accept_language or "").split(","):
        tag, _, params = part.strip().partition(";")
        q = 1.0
        if params.strip().startswith("q="):
            try:
                q = float(params.strip()[2:])
            except ValueError:
                q = 0.0
        base = tag.strip().lower().split("-")[0]
        if base in LANGS and q > best_q:
            best, best_q = base, q
    return best


def keys() -> frozenset[str]:
    return frozenset(_T)
