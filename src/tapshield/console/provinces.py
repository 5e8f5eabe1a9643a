"""A tile grid of China's 31 mainland provinces (ISO 3166-2 ``CN-xx``).

One equal tile per province, placed roughly where it lies (north at the top),
so a small western province is as visible as Guangdong: for channel health the
question is *which* provinces are failing, not how large they are.
"""

from __future__ import annotations

from typing import NamedTuple


class Tile(NamedTuple):
    code: str
    col: int
    row: int
    en: str
    """Short enough for a tile at 1280 px (two names are abbreviated)."""
    zh: str


TILES: tuple[Tile, ...] = (
    Tile("CN-HL", 8, 0, "Heilong.", "黑龙江"),
    Tile("CN-XJ", 1, 1, "Xinjiang", "新疆"),
    Tile("CN-NM", 4, 1, "Inner Mong.", "内蒙古"),
    Tile("CN-BJ", 6, 1, "Beijing", "北京"),
    Tile("CN-LN", 7, 1, "Liaoning", "辽宁"),
    Tile("CN-JL", 8, 1, "Jilin", "吉林"),
    Tile("CN-QH", 2, 2, "Qinghai", "青海"),
    Tile("CN-GS", 3, 2, "Gansu", "甘肃"),
    Tile("CN-NX", 4, 2, "Ningxia", "宁夏"),
    Tile("CN-SX", 5, 2, "Shanxi", "山西"),
    Tile("CN-HE", 6, 2, "Hebei", "河北"),
    Tile("CN-TJ", 7, 2, "Tianjin", "天津"),
    Tile("CN-XZ", 1, 3, "Tibet", "西藏"),
    Tile("CN-SC", 3, 3, "Sichuan", "四川"),
    Tile("CN-SN", 4, 3, "Shaanxi", "陕西"),
    Tile("CN-HA", 5, 3, "Henan", "河南"),
    Tile("CN-SD", 6, 3, "Shandong", "山东"),
    Tile("CN-CQ", 3, 4, "Chongqing", "重庆"),
    Tile("CN-HB", 4, 4, "Hubei", "湖北"),
    Tile("CN-AH", 5, 4, "Anhui", "安徽"),
    Tile("CN-JS", 6, 4, "Jiangsu", "江苏"),
    Tile("CN-SH", 7, 4, "Shanghai", "上海"),
    Tile("CN-YN", 2, 5, "Yunnan", "云南"),
    Tile("CN-GZ", 3, 5, "Guizhou", "贵州"),
    Tile("CN-HN", 4, 5, "Hunan", "湖南"),
    Tile("CN-JX", 5, 5, "Jiangxi", "江西"),
    Tile("CN-ZJ", 6, 5, "Zhejiang", "浙江"),
    Tile("CN-GX", 3, 6, "Guangxi", "广西"),
    Tile("CN-GD", 4, 6, "Guangdong", "广东"),
    Tile("CN-FJ", 5, 6, "Fujian", "福建"),
    Tile("CN-HI", 4, 7, "Hainan", "海南"),
)

BY_CODE = {t.code: t for t in TILES}
MIN_COL = min(t.col for t in TILES)
COLS = 1 + max(t.col for t in TILES) - MIN_COL
ROWS = 1 + max(t.row for t in TILES)


def name(code: str, lang: str) -> str:
    tile = BY_CODE.get(code)
    if tile is None:
        return code
    return tile.zh if lang == "zh" else tile.en
