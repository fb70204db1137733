#include "engine/identity/names.h"

#include <unicode/translit.h>
#include <unicode/unistr.h>

#include <algorithm>
#include <array>
#include <memory>
#include <unordered_map>
#include <unordered_set>

namespace yilian::identity {
namespace {

// Hanzi ranges given a reading: CJK Extension A, the unified block, and the
// compatibility ideographs (some hospitals' GBK converters emit those).
constexpr char32_t han_a_begin = 0x3400, han_a_end = 0xA000;
constexpr char32_t han_c_begin = 0xF900, han_c_end = 0xFB00;

bool is_han(char32_t c) noexcept {
  return (c >= han_a_begin && c < han_a_end) || (c >= han_c_begin && c < han_c_end);
}
std::size_t han_slot(char32_t c) noexcept {
  return c < han_a_end ? static_cast<std::size_t>(c - han_a_begin)
                       : static_cast<std::size_t>(han_a_end - han_a_begin) + static_cast<std::size_t>(c - han_c_begin);
}
constexpr std::size_t han_slots = (han_a_end - han_a_begin) + (han_c_end - han_c_begin);

// Surnames whose reading differs from the character's most common reading
// (ICU gives the common one): 单 is dan but the surname is Shan, etc.
constexpr std::array<std::pair<char32_t, std::string_view>, 24> surname_readings{{
    {U'单', "shan"}, {U'曾', "zeng"}, {U'仇', "qiu"}, {U'区', "ou"},  {U'查', "zha"},   {U'解', "xie"},
    {U'朴', "piao"}, {U'盖', "ge"},   {U'乐', "yue"}, {U'覃', "qin"}, {U'缪', "miao"},  {U'翟', "zhai"},
    {U'种', "chong"}, {U'折', "she"}, {U'繁', "po"},  {U'秘', "bi"},  {U'员', "yun"},   {U'尉', "wei"},
    {U'黑', "he"},   {U'长', "chang"}, {U'召', "shao"}, {U'隗', "wei"}, {U'重', "chong"}, {U'柏', "bai"},
}};

// Two-character surnames (hanzi) and their pinyin.
constexpr std::array<std::pair<std::u32string_view, std::string_view>, 28> compound_surnames{{
    {U"欧阳", "ouyang"},   {U"司马", "sima"},    {U"诸葛", "zhuge"},   {U"上官", "shangguan"}, {U"东方", "dongfang"},
    {U"皇甫", "huangfu"},  {U"令狐", "linghu"},  {U"夏侯", "xiahou"},  {U"尉迟", "yuchi"},     {U"长孙", "zhangsun"},
    {U"宇文", "yuwen"},    {U"公孙", "gongsun"}, {U"慕容", "murong"},  {U"司徒", "situ"},      {U"司空", "sikong"},
    {U"澹台", "tantai"},   {U"端木", "duanmu"},  {U"轩辕", "xuanyuan"}, {U"呼延", "huyan"},    {U"万俟", "moqi"},
    {U"闻人", "wenren"},   {U"南宫", "nangong"}, {U"西门", "ximen"},   {U"百里", "baili"},     {U"东郭", "dongguo"},
    {U"独孤", "dugu"},     {U"拓跋", "tuoba"},   {U"申屠", "shentu"},
}};

// Common single-character surnames: a hanzi string in the *given* field with
// no family name is split only when it starts with one of these.
constexpr std::u32string_view common_surnames =
    U"王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈姚卢姜崔"
    U"钟谭陆汪范金石廖贾夏韦付傅方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔向汤常温康施文牛樊"
    U"葛邢安齐易乔伍庞颜倪庄聂章鲁岳翟殷詹申欧耿关兰焦俞左柳甘祝包宁尚符舒阮柯纪梅童凌毕单季裴霍涂成苗谷盛曲翁冉骆"
    U"蓝路游辛靳管柴蒙鲍华喻祁蒲房滕屈饶解牟艾尤阳时穆农司卓古吉缪简车项连芦麦褚娄窦戚岑景党宫费卜冷晏席卫米柏宗瞿"
    U"桂全佟应臧闵苟邬边卞姬师和仇栾隋商刁沙荣巫寇桑郎甄丛仲虞敖巩明佘池查麻苑迟邝";

struct tables {
  std::vector<std::string> syllables{std::string()};  // 0 = no reading
  std::vector<std::uint16_t> han = std::vector<std::uint16_t>(han_slots, 0);
  std::unordered_map<char32_t, std::string> latin;  // letters with diacritics -> ASCII lowercase
  std::unordered_set<std::string> syllable_set;     // for segment_pinyin
  std::size_t readings = 0;
};

std::string ascii_letters_lower(std::string_view s) {
  std::string out;
  for (char c : s) {
    if (c >= 'a' && c <= 'z') out.push_back(c);
    else if (c >= 'A' && c <= 'Z') out.push_back(static_cast<char>(c - 'A' + 'a'));
  }
  return out;
}

// Transliterates every code point in `cps` in one ICU call ('\n' between them
// so that no multi-character rule fires) and hands each result to `take`.
template <class F>
void transliterate_each(const char* rules, const std::vector<char32_t>& cps, F&& take) {
  UErrorCode status = U_ZERO_ERROR;
  std::unique_ptr<icu::Transliterator> t(
      icu::Transliterator::createInstance(icu::UnicodeString(rules, -1, US_INV), UTRANS_FORWARD, status));
  if (U_FAILURE(status) || !t) return;  // no ICU data: names still work for Latin input
  icu::UnicodeString s;
  for (char32_t c : cps) {
    s.append(static_cast<UChar32>(c));
    s.append(static_cast<UChar>(u'\n'));
  }
  t->transliterate(s);
  std::string out;
  s.toUTF8String(out);
  std::size_t start = 0, i = 0;
  for (std::size_t k = 0; k < out.size() && i < cps.size(); ++k) {
    if (out[k] == '\n') {
      take(cps[i++], std::string_view(out).substr(start, k - start));
      start = k + 1;
    }
  }
}

tables build_tables() {
  tables t;
  std::unordered_map<std::string, std::uint16_t> ids;
  auto intern = [&](const std::string& syl) -> std::uint16_t {
    auto [it, inserted] = ids.try_emplace(syl, static_cast<std::uint16_t>(t.syllables.size()));
    if (inserted) t.syllables.push_back(syl);
    return it->second;
  };
  std::vector<char32_t> cps;
  cps.reserve(han_slots);
  for (char32_t c = han_a_begin; c < han_a_end; ++c) cps.push_back(c);
  for (char32_t c = han_c_begin; c < han_c_end; ++c) cps.push_back(c);
  transliterate_each("Han-Latin; Latin-ASCII", cps, [&](char32_t c, std::string_view out) {
    // Untransliterated hanzi come back as non-ASCII bytes: no reading.
    if (std::any_of(out.begin(), out.end(), [](char ch) { return static_cast<unsigned char>(ch) >= 0x80; })) return;
    std::string syl = ascii_letters_lower(out);
    if (syl.empty() || syl.size() > 12) return;
    t.han[han_slot(c)] = intern(syl);
    ++t.readings;
  });
  for (std::size_t i = 1; i < t.syllables.size(); ++i) {
    if (t.syllables[i].size() <= 6) t.syllable_set.insert(t.syllables[i]);
  }
  // Typists write ü as v (lv, nv) or yu (lyu).
  for (const char* s : {"lv", "nv", "lve", "nve", "lyu", "nyu"}) t.syllable_set.insert(s);

  cps.clear();
  for (char32_t c = 0x00C0; c < 0x0250; ++c) cps.push_back(c);
  for (char32_t c = 0x1E00; c < 0x1F00; ++c) cps.push_back(c);
  transliterate_each("Latin-ASCII", cps, [&](char32_t c, std::string_view out) {
    std::string a = ascii_letters_lower(out);
    if (!a.empty() && a.size() <= 3) t.latin.emplace(c, std::move(a));
  });
  return t;
}

const tables& get_tables() {
  static const tables t = build_tables();
  return t;
}

// Decodes one UTF-8 code point; invalid bytes yield U+FFFD and advance by one.
char32_t next_code_point(std::string_view s, std::size_t& i) noexcept {
  const auto b0 = static_cast<unsigned char>(s[i]);
  if (b0 < 0x80) { ++i; return b0; }
  int len = (b0 & 0xE0) == 0xC0 ? 2 : (b0 & 0xF0) == 0xE0 ? 3 : (b0 & 0xF8) == 0xF0 ? 4 : 0;
  if (len == 0 || i + static_cast<std::size_t>(len) > s.size()) { ++i; return 0xFFFD; }
  char32_t c = b0 & (len == 2 ? 0x1F : len == 3 ? 0x0F : 0x07);
  for (int k = 1; k < len; ++k) {
    const auto b = static_cast<unsigned char>(s[i + static_cast<std::size_t>(k)]);
    if ((b & 0xC0) != 0x80) { ++i; return 0xFFFD; }
    c = (c << 6) | (b & 0x3F);
  }
  i += static_cast<std::size_t>(len);
  return c;
}

struct token {
  std::string text;   // lowercase ASCII
  char32_t han = 0;   // the hanzi this token came from, 0 for Latin words
};

// ü written as v or yu: lv -> lu, nve -> nue.
void fold_umlaut(std::string& syl) {
  if (syl.size() >= 2 && (syl[0] == 'l' || syl[0] == 'n')) {
    if (syl == "lv" || syl == "nv" || syl == "lyu" || syl == "nyu") syl.resize(1), syl += 'u';
    else if (syl == "lve" || syl == "nve") syl = std::string(1, syl[0]) + "ue";
  }
}

std::vector<token> tokenize(std::string_view utf8, bool surname_first, bool keep_digits = false) {
  const tables& t = get_tables();
  std::vector<token> out;
  std::string word;
  auto flush = [&] {
    if (!word.empty()) {
      fold_umlaut(word);
      out.push_back(token{.text = std::move(word)});
      word.clear();
    }
  };
  std::size_t i = 0;
  while (i < utf8.size()) {
    char32_t c = next_code_point(utf8, i);
    if (c >= 0xFF01 && c <= 0xFF5E) c -= 0xFEE0;  // full-width ASCII
    if (c >= 'A' && c <= 'Z') { word.push_back(static_cast<char>(c - 'A' + 'a')); continue; }
    if (c >= 'a' && c <= 'z') { word.push_back(static_cast<char>(c)); continue; }
    if (c >= '0' && c <= '9') {
      if (keep_digits) word.push_back(static_cast<char>(c));
      continue;  // in names: tone digits ("zhang1"); digits never carry a name
    }
    if (is_han(c)) {
      flush();
      const bool first_han = out.empty() && surname_first;
      std::string_view syl = pinyin_of(c, first_han);
      if (!syl.empty()) out.push_back(token{.text = std::string(syl), .han = c});
      continue;
    }
    if (auto it = t.latin.find(c); it != t.latin.end()) { word += it->second; continue; }
    flush();  // space, hyphen, apostrophe, middle dot, anything else
  }
  flush();
  return out;
}

std::uint32_t han_hash(const std::vector<token>& toks, std::size_t from, std::size_t to) {
  std::uint32_t h = 2166136261U;
  bool any = false;
  for (std::size_t i = from; i < to; ++i) {
    if (toks[i].han == 0) continue;
    any = true;
    h = (h ^ static_cast<std::uint32_t>(toks[i].han)) * 16777619U;
  }
  if (!any) return 0;
  return h == 0 ? 1 : h;
}

std::string join(const std::vector<token>& toks, std::size_t from, std::size_t to) {
  std::string s;
  for (std::size_t i = from; i < to; ++i) s += toks[i].text;
  return s;
}

bool all_han(const std::vector<token>& toks) {
  return !toks.empty() && std::all_of(toks.begin(), toks.end(), [](const token& k) { return k.han != 0; });
}

// Number of leading tokens forming the surname of a whole name.
std::size_t surname_length(const std::vector<token>& toks) {
  if (toks.size() >= 3 || (toks.size() == 2 && toks[0].han == 0)) {
    if (toks[0].han != 0 && toks[1].han != 0) {
      const std::u32string pair{toks[0].han, toks[1].han};
      for (const auto& [han, _] : compound_surnames) {
        if (han == pair) return 2;
      }
    } else if (toks[0].han == 0 && toks[1].han == 0 && toks.size() >= 3) {
      const std::string pair = toks[0].text + toks[1].text;
      for (const auto& [_, pinyin] : compound_surnames) {
        if (pinyin == pair) return 2;
      }
    }
  }
  return 1;
}

normalized_name split_whole(std::vector<token> toks) {
  normalized_name n;
  if (toks.empty()) return n;
  // A whole name typed as one Latin run ("ZHANGSAN") is split into syllables.
  if (toks.size() == 1 && toks[0].han == 0) {
    // A compound surname alone ("OUYANG") is a surname, not ou + yang.
    const bool compound = std::any_of(compound_surnames.begin(), compound_surnames.end(),
                                      [&](const auto& cs) { return cs.second == toks[0].text; });
    auto syl = compound ? std::vector<std::string>{} : segment_pinyin(toks[0].text);
    if (syl.size() >= 2 && syl.size() <= 4) {
      toks.clear();
      for (auto& s : syl) toks.push_back(token{.text = std::move(s)});
    }
  }
  const std::size_t k = std::min(surname_length(toks), toks.size());
  n.family = join(toks, 0, k);
  if (k == 2 && toks[0].han != 0) {
    // Compound surnames have their own reading (长孙 is zhangsun, not changsun).
    const std::u32string pair{toks[0].han, toks[1].han};
    for (const auto& [han, pinyin] : compound_surnames) {
      if (han == pair) n.family = std::string(pinyin);
    }
  }
  n.given = join(toks, k, toks.size());
  n.han_family = han_hash(toks, 0, k);
  n.han_given = han_hash(toks, k, toks.size());
  return n;
}

}  // namespace

std::string fold_text(std::string_view utf8) {
  std::string out;
  for (const auto& t : tokenize(utf8, false, true)) {
    if (!out.empty()) out.push_back(' ');
    out += t.text;
  }
  return out;
}

std::string_view pinyin_of(char32_t hanzi, bool as_surname) {
  if (as_surname) {
    for (const auto& [c, reading] : surname_readings) {
      if (c == hanzi) return reading;
    }
  }
  if (!is_han(hanzi)) return {};
  const tables& t = get_tables();
  return t.syllables[t.han[han_slot(hanzi)]];
}

std::vector<std::string> name_tokens(std::string_view utf8) {
  std::vector<std::string> out;
  for (auto& t : tokenize(utf8, false)) out.push_back(std::move(t.text));
  return out;
}

std::vector<std::string> segment_pinyin(std::string_view s) {
  const auto& set = get_tables().syllable_set;
  const std::size_t n = s.size();
  if (n == 0 || n > 32) return {};
  // best[i]: fewest syllables covering s[i..); ties keep the longer first syllable.
  constexpr int none = 1 << 20;
  std::array<int, 33> best{};
  std::array<std::size_t, 33> step{};
  best[n] = 0;
  std::string probe;
  for (std::size_t i = n; i-- > 0;) {
    best[i] = none;
    for (std::size_t len = std::min<std::size_t>(6, n - i); len >= 1; --len) {
      if (best[i + len] == none) continue;
      probe.assign(s.substr(i, len));
      if (!set.contains(probe)) continue;
      if (best[i + len] + 1 < best[i]) {
        best[i] = best[i + len] + 1;
        step[i] = len;
      }
    }
  }
  if (best[0] == none) return {};
  std::vector<std::string> out;
  for (std::size_t i = 0; i < n; i += step[i]) {
    std::string syl(s.substr(i, step[i]));
    fold_umlaut(syl);
    out.push_back(std::move(syl));
  }
  return out;
}

std::size_t surname_token_count(const std::vector<std::string>& tokens) {
  std::vector<token> toks;
  for (const auto& t : tokens) toks.push_back(token{.text = t});
  return surname_length(toks);
}

normalized_name normalize_name(std::string_view family, std::string_view given) {
  std::vector<token> f = tokenize(family, true);
  std::vector<token> g = tokenize(given, false);
  if (!f.empty() && !g.empty()) {
    normalized_name n{.family = join(f, 0, f.size()), .given = join(g, 0, g.size())};
    n.han_family = han_hash(f, 0, f.size());
    n.han_given = han_hash(g, 0, g.size());
    return n;
  }
  if (!f.empty()) {
    // Family field alone: a whole name when it has several tokens ("ZHANG SAN",
    // 张三) or is one pinyin run; a lone surname otherwise.
    if (f.size() >= 2 || (f.size() == 1 && f[0].han == 0)) return split_whole(std::move(f));
    return normalized_name{.family = f[0].text, .han_family = han_hash(f, 0, 1)};
  }
  if (!g.empty()) {
    // Given field alone: only a hanzi string that starts with a common
    // surname is taken as a whole name; "mary ann" stays a given name.
    if (all_han(g) && g.size() >= 2) {
      const std::u32string pair = g.size() >= 3 ? std::u32string{g[0].han, g[1].han} : std::u32string{};
      const bool compound = std::any_of(compound_surnames.begin(), compound_surnames.end(),
                                        [&](const auto& cs) { return cs.first == pair; });
      if (compound || common_surnames.find(g[0].han) != std::u32string_view::npos) {
        // Re-read the first character with its surname reading.
        g[0].text = std::string(pinyin_of(g[0].han, true));
        return split_whole(std::move(g));
      }
    }
    normalized_name n{.given = join(g, 0, g.size())};
    n.han_given = han_hash(g, 0, g.size());
    return n;
  }
  return {};
}

std::string soundex(std::string_view s) {
  if (s.empty() || s[0] < 'a' || s[0] > 'z') return {};
  // a e i o u y h w -> 0 (h, w do not separate equal codes)
  static constexpr std::string_view codes = "01230120022455012623010202";
  std::string out(1, static_cast<char>(s[0] - 'a' + 'A'));
  char last = codes[static_cast<std::size_t>(s[0] - 'a')];
  for (std::size_t i = 1; i < s.size() && out.size() < 4; ++i) {
    const char c = s[i];
    if (c < 'a' || c > 'z') continue;
    const char code = codes[static_cast<std::size_t>(c - 'a')];
    if (c == 'h' || c == 'w') continue;
    if (code != '0' && code != last) out.push_back(code);
    last = code;
  }
  out.resize(4, '0');
  return out;
}

std::size_t warm_up_names() { return get_tables().readings; }

}  // namespace yilian::identity
