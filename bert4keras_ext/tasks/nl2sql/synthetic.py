"""A small generated Chinese NL2SQL dataset in the challenge's format (for the no-argument example run).

Five kinds of table (housing, films, phones, companies, students), several tables of each kind with their
own rows, TEXT and REAL columns (one header has a space, one has quotes, so identifier quoting is
exercised end to end). Questions are template sentences that cover every aggregation, operator and
connector; condition values are written in the question — text values as they appear in the table,
numbers in Arabic digits or in Chinese (三千五百, 1.2万, 两万), so value normalisation is needed to get them
right — and the gold values are written as the challenge writes them ('3500').
"""
import re

import numpy as np

from bert4keras_ext.tasks.nl2sql.data import Example, Table, validate_sql
from bert4keras_ext.tasks.nl2sql.numerals import format_number

__all__ = ['generate_dataset', 'to_chinese_numeral', 'THEMES']

_CITIES = '北京 上海 广州 深圳 杭州 成都 武汉 南京 西安 重庆 苏州 天津'.split()
# (header, type, pool): a list of cells for TEXT columns, (low, high, step) for REAL ones
THEMES = [
    {
        'kind': '楼盘', 'unit': '个楼盘',
        'columns': [
            ('楼盘名称', 'text', '阳光花园 锦绣家园 翠湖天地 滨江一号 金色港湾 时代广场 万科城 碧桂园 绿城桂花园 '
                                '融创壹号院 保利天悦 龙湖春江郦城 世茂云图 中海寰宇'.split()),
            ('城市', 'text', _CITIES),
            ('均价', 'real', (12000, 90000, 500)),
            ('容积率', 'real', (1.0, 5.0, 0.1)),
            ('在售套数', 'real', (20, 900, 10)),
        ],
    },
    {
        'kind': '电影', 'unit': '部电影',
        'columns': [
            ('电影名称', 'text', '流浪地球 战狼 哪吒 你好李焕英 唐人街探案 长津湖 红海行动 我和我的祖国 少年的你 满江红 '
                                '独行月球 误杀'.split()),
            ('导演', 'text', '郭帆 吴京 饺子 贾玲 陈思诚 陈凯歌 林超贤 曾国祥 张艺谋 张吃鱼'.split()),
            ('类型', 'text', '科幻 动作 动画 喜剧 悬疑 战争 剧情'.split()),
            ('票房(万元)', 'real', (5000, 500000, 100)),
            ('"豆瓣"评分', 'real', (5.0, 9.5, 0.1)),
        ],
    },
    {
        'kind': '手机', 'unit': '款手机',
        'columns': [
            ('型号', 'text', '星辰十 极光 麒麟 青春版 超能 旗舰 轻薄 探索者 先锋 领航'.split()),
            ('品牌', 'text', '华为 小米 荣耀 魅族 一加 联想 中兴 酷派'.split()),
            ('价格', 'real', (999, 9999, 100)),
            ('销量', 'real', (1000, 200000, 1000)),
            ('屏幕 尺寸', 'real', (5.0, 7.5, 0.1)),
        ],
    },
    {
        'kind': '公司', 'unit': '家公司',
        'columns': [
            ('公司名称', 'text', '星海科技 蓝天物流 长城汽车 华夏银行 东方航空 南方电网 中原地产 北方稀土 西部证券 '
                                '天合光能 海天味业 金龙鱼'.split()),
            ('行业', 'text', '科技 物流 汽车 金融 航空 能源 地产 食品'.split()),
            ('所在省份', 'text', '广东 浙江 江苏 山东 四川 湖北 河南 福建'.split()),
            ('营收', 'real', (50, 5000, 10)),
            ('员工人数', 'real', (100, 60000, 100)),
        ],
    },
    {
        'kind': '学生', 'unit': '名学生',
        'columns': [
            ('姓名', 'text', '张伟 王芳 李娜 刘洋 陈静 杨磊 赵敏 黄勇 周杰 吴霞 徐强 孙丽 马超 朱琳'.split()),
            ('班级', 'text', '一班 二班 三班 四班 五班'.split()),
            ('数学', 'real', (40, 100, 1)),
            ('语文', 'real', (40, 100, 1)),
            ('英语', 'real', (40, 100, 1)),
        ],
    },
]

_SEL_TEMPLATES = {
    0: ['{col}是什么', '{col}分别是多少', '{col}是多少'],
    1: ['平均{col}是多少', '{col}的平均值是多少'],
    2: ['最高{col}是多少', '{col}最大是多少'],
    3: ['最低{col}是多少', '{col}最小是多少'],
    4: ['有多少{unit}', '一共有几{unit}'],
    5: ['{col}总共是多少', '{col}的总和是多少'],
}
_COND_TEMPLATES = {
    ('text', 2): ['{col}是{v}', '{col}为{v}'],
    ('text', 3): ['{col}不是{v}', '{col}不为{v}'],
    ('real', 0): ['{col}大于{v}', '{col}高于{v}', '{col}超过{v}'],
    ('real', 1): ['{col}小于{v}', '{col}低于{v}', '{col}不到{v}'],
    ('real', 2): ['{col}等于{v}', '{col}正好是{v}'],
    ('real', 3): ['{col}不等于{v}', '{col}不是{v}'],
}
_CONN_WORDS = {1: ['并且', '而且', '同时'], 2: ['或者', '或']}
_CN_DIGITS = '零一二三四五六七八九'


def to_chinese_numeral(n):
    """A non-negative integer < 1e12 in Chinese numerals (3500 → 三千五百, 20000 → 二万, 105 → 一百零五)."""
    n = int(n)
    if n == 0:
        return '零'

    def below_10000(x, leading):
        out, zero = '', False
        for unit_value, unit in ((1000, '千'), (100, '百'), (10, '十'), (1, '')):
            digit = x // unit_value % 10
            if digit:
                if zero and out:
                    out += '零'
                if not (unit == '十' and digit == 1 and leading and not out):
                    out += _CN_DIGITS[digit]
                out += unit
                zero = False
            elif out:
                zero = True
        return out

    parts, first = '', True
    for unit_value, unit in ((10 ** 8, '亿'), (10 ** 4, '万'), (1, '')):
        x = n // unit_value % 10000 if unit_value < 10 ** 8 else n // unit_value
        if x:
            if parts and x < 1000:
                parts += '零'
            parts += below_10000(x, first) + unit
            first = False
    return parts


def _spoken(header):
    """How a question names a column: without bracketed units, quotes or spaces (票房(万元) → 票房)."""
    return re.sub(r'[(（][^)）]*[)）]', '', header).replace('"', '').replace(' ', '')


def _render_number(value, rng, header):
    """How a question writes a number: Arabic mostly, sometimes Chinese or with 万. A column whose
    header carries the unit (票房(万元)) is always written in plain digits of that unit."""
    if float(value).is_integer() and '万' not in header and '亿' not in header:
        n = int(value)
        r = rng.rand()
        if n >= 10000 and n % 1000 == 0 and r < 0.3:
            return format_number(n / 10000) + '万'
        if r < 0.55 and n <= 99999 and len(str(n).rstrip('0')) <= 2:
            return to_chinese_numeral(n)  # round numbers read naturally in Chinese: 三千五百, 二万
    return format_number(value)


def _column_values(spec, rng, rows):
    name, kind, pool = spec
    if kind == 'text':
        if len(pool) >= rows and rng.rand() < 0.8:
            return list(rng.choice(pool, size=rows, replace=False))
        return list(rng.choice(pool, size=rows))
    low, high, step = pool
    steps = int(round((high - low) / step))
    return [float(format_number(low + step * rng.randint(steps + 1))) for _ in range(rows)]


def _make_tables(rng, tables_per_theme, rows):
    tables = []
    for t, theme in enumerate(THEMES):
        for k in range(tables_per_theme):
            n_rows = int(rng.randint(rows[0], rows[1] + 1))
            columns = [_column_values(spec, rng, n_rows) for spec in theme['columns']]
            header = [spec[0] for spec in theme['columns']]
            types = [spec[1] for spec in theme['columns']]
            table_rows = [[c[r] for c in columns] for r in range(n_rows)]
            tables.append((theme, Table('syn_%d_%d' % (t, k), header, types, table_rows,
                                        name='%s表%d' % (theme['kind'], k + 1))))
    return tables


def _threshold(values, rng):
    """A round number inside the column's range, for '>' / '<'."""
    v = float(rng.choice(values))
    if v >= 100:
        magnitude = 10 ** (len(str(int(v))) - 2)
        return float(int(v // magnitude) * magnitude)
    if v >= 10:
        return float(int(v))
    return float(format_number(round(v, 1)))


def _condition(theme, table, rng, used_columns):
    choices = [j for j in range(table.num_columns) if j not in used_columns]
    if 0 in choices and len(choices) > 1 and rng.rand() < 0.7:
        choices.remove(0)  # conditions on the entity name itself are rarer
    col = int(rng.choice(choices))
    kind = table.types[col]
    if kind == 'text':
        op = 2 if rng.rand() < 0.75 else 3
        value = str(rng.choice(table.text_cells(col)))
        shown = value
    else:
        op = int(rng.choice([0, 1, 2, 3], p=[0.35, 0.35, 0.2, 0.1]))
        values = table.real_values(col)
        number = float(rng.choice(values)) if op in (2, 3) else _threshold(values, rng)
        value, shown = format_number(number), _render_number(number, rng, table.header[col])
    template = _COND_TEMPLATES[(kind, op)][rng.randint(len(_COND_TEMPLATES[(kind, op)]))]
    return [col, op, value], template.format(col=_spoken(table.header[col]), v=shown)


def _selection(theme, table, rng):
    real_columns = [j for j, t in enumerate(table.types) if t == 'real']
    pairs = []
    for _ in range(1 if rng.rand() < 0.8 else 2):
        agg = int(rng.randint(6))
        if agg == 4:
            col = 0  # COUNT counts the entity column
        elif agg == 0:
            col = int(rng.randint(table.num_columns))
        else:
            col = int(rng.choice(real_columns))
        if col not in [p[0] for p in pairs]:
            pairs.append((col, agg))
    phrases = []
    for col, agg in pairs:
        templates = _SEL_TEMPLATES[agg]
        phrases.append(templates[rng.randint(len(templates))].format(col=_spoken(table.header[col]), unit=theme['unit']))
    return pairs, '，'.join(phrases)


def _question(theme, table, rng):
    pairs, sel_text = _selection(theme, table, rng)
    n_conds = int(rng.choice([0, 1, 2], p=[0.1, 0.45, 0.45]))
    conds, texts, used = [], [], set()
    for _ in range(n_conds):
        cond, text = _condition(theme, table, rng, used)
        used.add(cond[0])
        conds.append(cond)
        texts.append(text)
    conn = 0 if len(conds) < 2 else int(rng.randint(1, 3))
    if conds:
        joined = texts[0] if len(texts) == 1 else (
            texts[0] + _CONN_WORDS[conn][rng.randint(len(_CONN_WORDS[conn]))] + texts[1])
        question = joined + '的' + theme['kind'] + '中，' + sel_text + '？'
    else:
        question = '所有' + theme['kind'] + '中，' + sel_text + '？'
    if rng.rand() < 0.3:
        question = '请问' + question
    sql = {'sel': [p[0] for p in pairs], 'agg': [p[1] for p in pairs], 'cond_conn_op': conn, 'conds': conds}
    return question, validate_sql(sql, table)


def generate_dataset(n_train=1200, n_valid=300, tables_per_theme=4, rows=(6, 12), seed=0):
    """Generated (train examples, valid examples, {id: Table}).

    Train and valid questions are drawn from the same tables (as in the challenge, where splits share
    table styles but not questions); every agg, op and connector value occurs given a few hundred
    questions.
    """
    rng = np.random.RandomState(seed)
    themed = _make_tables(rng, tables_per_theme, rows)
    tables = {table.id: table for _, table in themed}

    def draw(n, tag):
        examples = []
        for k in range(n):
            theme, table = themed[rng.randint(len(themed))]
            question, sql = _question(theme, table, rng)
            examples.append(Example(table.id, question, sql, source='<generated %s %d>' % (tag, k)))
        return examples

    return draw(n_train, 'train'), draw(n_valid, 'valid'), tables
