// Person names reduced to something comparable across scripts.
//
// Hospitals write the same person as 张三, "Zhang San", "ZHANGSAN",
// "zhāng sān", "zhang1 san1" or "San Zhang". Every form is folded to lowercase
// ASCII pinyin: hanzi through ICU's Han-Latin transliteration (taken once per
// character into a table at first use, so per-record cost is a table lookup),
// tone marks and tone digits dropped, ü/v folded to u, full-width letters to
// ASCII, separators (space, hyphen, apostrophe, middle dot) removed inside a
// part. A name that arrives as one unsplit string is split into family and
// given (compound surnames such as 欧阳/Ouyang recognised; an unspaced pinyin
// run "zhangsan" segmented into syllables). Latin (e.g. English) names go
// through the same folding and simply stay as they are.
//
// Homophones: 张伟 and 张薇 are both "zhang wei". When a part was written in
// hanzi, a hash of the hanzi is kept too so the comparator can tell "same
// characters" from "same sound" (see compare.h).
//
// Thread-safety: all functions are pure; the transliteration table is built
// once (thread-safe static initialization) on first use or by warm_up().
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace yilian::identity {

struct normalized_name {
  std::string family;  // "zhang", "ouyang", "neumann"; empty when unknown
  std::string given;   // "sanfeng", "michaela"; empty when unknown
  // Non-zero hash of the hanzi spelling of each part (0 = not written in hanzi).
  std::uint32_t han_family = 0;
  std::uint32_t han_given = 0;
  bool operator==(const normalized_name&) const = default;
};

// Folds one name string to lowercase ASCII tokens (one per hanzi, one per
// space/punctuation-separated Latin word; tone digits dropped).
std::vector<std::string> name_tokens(std::string_view utf8);

// Lowercase ASCII fold of free text such as addresses: hanzi to pinyin,
// diacritics dropped, digits kept, separators to single spaces.
std::string fold_text(std::string_view utf8);

// Normalizes a (family, given) pair as received. Either may be empty; when
// only one is filled and it holds a whole name, it is split (first token or
// compound surname = family).
normalized_name normalize_name(std::string_view family, std::string_view given);

// Pinyin of one hanzi (toneless, lowercase) or empty when it is not a hanzi
// ICU knows. Surname readings (单 shan, 曾 zeng, ...) when `as_surname`.
std::string_view pinyin_of(char32_t hanzi, bool as_surname = false);

// Splits an unspaced lowercase run into pinyin syllables ("zhangsan" ->
// {"zhang","san"}); empty when it is not entirely pinyin.
std::vector<std::string> segment_pinyin(std::string_view ascii_lower);

// Length of a compound surname at the start of `tokens` (2 for "ou","yang"),
// 1 otherwise.
std::size_t surname_token_count(const std::vector<std::string>& tokens);

// American Soundex (letter + 3 digits) of an ASCII lowercase word; "" for "".
// Used for blocking keys only, never for scoring.
std::string soundex(std::string_view ascii_lower);

// Builds the transliteration table now rather than on the first record
// (startup, benchmarks). Returns the number of hanzi with a reading.
std::size_t warm_up_names();

}  // namespace yilian::identity
