#include <catch2/catch.hpp>

#include "engine/identity/compare.h"
#include "engine/identity/names.h"

using namespace yilian::identity;

TEST_CASE("ICU's Han-Latin data is present and gives toneless pinyin", "[unit]") {
  CHECK(warm_up_names() > 20000);
  CHECK(pinyin_of(U'张') == "zhang");
  CHECK(pinyin_of(U'吕') == "lu");
  CHECK(pinyin_of(U'a') == "");
}

TEST_CASE("surnames with a special reading are read as surnames", "[unit]") {
  CHECK(pinyin_of(U'单') == "dan");
  CHECK(pinyin_of(U'单', true) == "shan");
  CHECK(normalize_name("曾", "国藩").family == "zeng");
  CHECK(normalize_name("单雄信", "").family == "shan");
}

TEST_CASE("a hanzi name and its pinyin in every spelling normalize alike", "[unit]") {
  const normalized_name han = normalize_name("张", "三丰");
  CHECK(han.family == "zhang");
  CHECK(han.given == "sanfeng");
  CHECK(han.han_family != 0);
  for (auto [f, g] : std::initializer_list<std::pair<std::string_view, std::string_view>>{
           {"Zhang", "Sanfeng"}, {"ZHANG", "SAN FENG"}, {"zhāng", "sān fēng"}, {"zhang1", "san1 feng1"},
           {"Zhang", "San-Feng"}, {"张三丰", ""}, {"ZHANG SANFENG", ""}, {"ZHANGSANFENG", ""}, {"", "张三丰"},
           {"Ｚｈａｎｇ", "Ｓａｎｆｅｎｇ"}}) {
    INFO(f << " / " << g);
    const normalized_name n = normalize_name(f, g);
    CHECK(n.family == "zhang");
    CHECK(n.given == "sanfeng");
  }
}

TEST_CASE("compound surnames are kept whole", "[unit]") {
  CHECK(normalize_name("欧阳修", "").family == "ouyang");
  CHECK(normalize_name("欧阳修", "").given == "xiu");
  CHECK(normalize_name("长孙无忌", "").family == "zhangsun");
  CHECK(normalize_name("OUYANGXIU", "").family == "ouyang");
  CHECK(normalize_name("Ōuyáng", "").family == "ouyang");
  CHECK(normalize_name("Ōuyáng", "").given.empty());
  CHECK(normalize_name("", "诸葛亮").family == "zhuge");
}

TEST_CASE("ü written as v or yu folds to u", "[unit]") {
  CHECK(normalize_name("Lv", "Bu").family == "lu");
  CHECK(normalize_name("Lǚ", "Bù").family == "lu");
  CHECK(normalize_name("吕", "布").family == "lu");
  CHECK(normalize_name("LVBU", "").family == "lu");
}

TEST_CASE("homophones keep a hanzi fingerprint that tells them apart", "[unit]") {
  const auto a = normalize_name("张", "伟"), b = normalize_name("张", "薇");
  CHECK(a.given == b.given);
  CHECK(a.han_given != b.han_given);
  CHECK(a.han_family == b.han_family);
  CHECK(normalize_name("Zhang", "Wei").han_given == 0);
}

TEST_CASE("Latin names stay as written, only folded", "[unit]") {
  const auto n = normalize_name("O'Brien", "Mary-Ann");
  CHECK(n.family == "obrien");
  CHECK(n.given == "maryann");
  CHECK(normalize_name("Müller", "José").family == "muller");
  CHECK(normalize_name("Müller", "José").given == "jose");
  // A lone given name is not taken for a whole name.
  CHECK(normalize_name("", "tina").given == "tina");
  CHECK(normalize_name("", "tina").family.empty());
  CHECK(normalize_name("white", "").family == "white");
}

TEST_CASE("pinyin runs segment into syllables, preferring fewer and longer", "[unit]") {
  CHECK(segment_pinyin("zhangsan") == std::vector<std::string>{"zhang", "san"});
  CHECK(segment_pinyin("xian") == std::vector<std::string>{"xian"});
  CHECK(segment_pinyin("wangxiaoming") == std::vector<std::string>{"wang", "xiao", "ming"});
  CHECK(segment_pinyin("neumann").empty());
}

TEST_CASE("Soundex follows the American rules", "[unit]") {
  CHECK(soundex("robert") == "R163");
  CHECK(soundex("rupert") == "R163");
  CHECK(soundex("ashcraft") == "A261");  // h does not separate s and c
  CHECK(soundex("tymczak") == "T522");
  CHECK(soundex("pfister") == "P236");
  CHECK(soundex("lee") == "L000");
  CHECK(soundex("") == "");
}

TEST_CASE("addresses fold to ASCII words with digits kept", "[unit]") {
  CHECK(fold_text("北京市朝阳区 建国路 88号") == "bei jing shi chao yang qu jian guo lu 88 hao");
  CHECK(fold_text("12  Pinkerton Circuit") == "12 pinkerton circuit");
}
