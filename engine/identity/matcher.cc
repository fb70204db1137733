#include "engine/identity/matcher.h"

#include <algorithm>
#include <cmath>
#include <map>

#include "engine/identity/compare.h"
#include "engine/identity/resident_id.h"

namespace yilian::identity {

std::string_view to_string(field f) noexcept {
  switch (f) {
    case field::family: return "family";
    case field::given: return "given";
    case field::birth_date: return "birth_date";
    case field::sex: return "sex";
    case field::phone: return "phone";
    case field::resident_id: return "resident_id";
    case field::card: return "card";
    case field::postcode: return "postcode";
    case field::city: return "city";
    case field::street: return "street";
    case field::street_number: return "street_number";
    case field::line2: return "line2";
    case field::province: return "province";
  }
  return "unknown";
}

std::size_t level_count(field f) noexcept {
  switch (f) {
    case field::family:
    case field::given:
    case field::birth_date:
    case field::street: return 4;
    case field::card:
    case field::postcode:
    case field::city:
    case field::line2: return 3;
    case field::sex:
    case field::phone:
    case field::resident_id:
    case field::street_number:
    case field::province: return 2;
  }
  return 2;
}

std::string_view to_string(rule r) noexcept {
  switch (r) {
    case rule::none: return "none";
    case rule::identifier: return "identifier";
    case rule::resident_id: return "resident_id";
    case rule::card: return "card";
    case rule::probabilistic: return "probabilistic";
    case rule::a40_merge: return "a40_merge";
    case rule::operator_link: return "operator_link";
    case rule::operator_split: return "operator_split";
  }
  return "unknown";
}

std::string_view to_string(verdict v) noexcept {
  switch (v) {
    case verdict::link: return "link";
    case verdict::review: return "review";
    case verdict::no_link: return "no_link";
  }
  return "unknown";
}

std::string_view to_string(hold h) noexcept {
  switch (h) {
    case hold::none: return "none";
    case hold::conflicting_resident_id: return "conflicting_resident_id";
    case hold::name_disagrees: return "name_disagrees";
    case hold::birth_date_disagrees: return "birth_date_disagrees";
    case hold::same_domain: return "same_domain";
    case hold::ambiguous: return "ambiguous";
    case hold::given_name_similar: return "given_name_similar";
    case hold::uncorroborated: return "uncorroborated";
  }
  return "unknown";
}

void field_weights::finalize() {
  for (std::size_t f = 0; f < field_count; ++f) {
    for (std::size_t l = 0; l < max_levels; ++l) {
      const double mm = std::max(m[f][l], 1e-9), uu = std::max(u[f][l], 1e-9);
      w[f][l] = l < level_count(static_cast<field>(f)) ? std::log2(mm / uu) : 0.0;
    }
  }
}

field_weights field_weights::defaults() {
  field_weights fw;
  auto set = [&](field f, std::array<double, max_levels> m, std::array<double, max_levels> u) {
    fw.m[static_cast<std::size_t>(f)] = m;
    fw.u[static_cast<std::size_t>(f)] = u;
  };
  // Levels: names exact / close (same sound, or JW >= 0.94) / similar (JW >= 0.85) / disagree.
  set(field::family, {0.90, 0.05, 0.03, 0.02}, {0.01, 0.002, 0.01, 0.978});
  set(field::given, {0.86, 0.06, 0.05, 0.03}, {0.003, 0.002, 0.01, 0.985});
  // Birth date exact / typo / partial / disagree; u over ~80 birth years.
  set(field::birth_date, {0.92, 0.05, 0.02, 0.01}, {0.00005, 0.0005, 0.005, 0.99445});
  set(field::sex, {0.98, 0.02, 0, 0}, {0.5, 0.5, 0, 0});
  // Families share phones: agreement is modest evidence, disagreement weak.
  set(field::phone, {0.6, 0.4, 0, 0}, {0.005, 0.995, 0, 0});
  // Both valid and different: the MOD 11-2 check character catches every
  // single-digit error and adjacent transposition, so a same-person pair
  // shows two valid numbers only after double errors or a relative's number.
  set(field::resident_id, {0.99, 0.01, 0, 0}, {1e-7, 1.0 - 1e-7, 0, 0});
  // Card serials are issued in sequence, a household's together: a number
  // one keystroke from yours is a neighbour's or a relative's about as often
  // as a typo of yours.
  set(field::card, {0.93, 0.03, 0.04, 0}, {1e-6, 1e-3, 1.0 - 1.001e-3, 0});
  set(field::postcode, {0.90, 0.05, 0.05, 0}, {0.01, 0.03, 0.96, 0});
  set(field::city, {0.90, 0.05, 0.05, 0}, {0.005, 0.005, 0.99, 0});
  set(field::street, {0.85, 0.07, 0.04, 0.04}, {0.0005, 0.001, 0.01, 0.9885});
  set(field::street_number, {0.90, 0.10, 0, 0}, {0.02, 0.98, 0, 0});
  set(field::line2, {0.80, 0.10, 0.10, 0}, {0.001, 0.002, 0.997, 0});
  set(field::province, {0.95, 0.05, 0, 0}, {0.2, 0.8, 0, 0});
  fw.finalize();
  return fw;
}

features_view features::view() const noexcept {
  features_view v{.family = name.family, .given = name.given, .han_family = name.han_family,
                  .han_given = name.han_given, .birth = birth, .sex = sex, .phone = phone,
                  .resident_id = resident_id};
  for (std::size_t i = 0; i < max_card_systems; ++i) v.cards[i] = cards[i];
  v.postcode = postcode;
  v.city = city;
  v.street = street;
  v.street_number = street_number;
  v.line2 = line2;
  v.province = province;
  return v;
}

features make_features(const demographics& d, std::string_view resident_id_text,
                       const std::array<std::string_view, max_card_systems>& card_texts, civil_date today) {
  features f;
  f.name = normalize_name(d.family_name, d.given_name);
  f.birth = d.birth_date.known() ? d.birth_date : civil_date{};
  f.sex = d.sex;
  f.phone = normalize_phone(d.phone);
  if (!resident_id_text.empty()) {
    if (auto rid = parse_resident_id(resident_id_text, today)) {
      f.resident_id = std::move(rid->number);
      if (!f.birth.known()) f.birth = rid->birth_date;
      if (f.sex == sex::unknown) f.sex = rid->sex;
    } else {
      f.resident_id_invalid = true;
    }
  }
  for (std::size_t i = 0; i < max_card_systems; ++i) f.cards[i] = normalize_card_number(card_texts[i]);
  auto fold_compact = [](std::string_view s) {
    std::string out = fold_text(s);
    std::erase(out, ' ');
    return out;
  };
  f.postcode = fold_compact(d.postcode);
  f.city = fold_text(d.city);
  f.street = fold_text(d.line1);
  f.street_number = fold_compact(d.street_number);
  f.line2 = fold_text(d.line2);
  f.province = fold_text(d.province);
  return f;
}

namespace {

constexpr std::uint8_t lvl(int v) { return static_cast<std::uint8_t>(v); }

std::uint8_t name_level(std::string_view a, std::string_view b, std::uint32_t ha, std::uint32_t hb) noexcept {
  if (a.empty() || b.empty()) return missing_level;
  if (a == b) return (ha != 0 && hb != 0 && ha != hb) ? 1 : 0;  // homophones: same sound, other characters
  const double jw = jaro_winkler(a, b);
  // Both written in hanzi and not even the sound agrees: an input-method
  // typo yields a homophone, so these are two different names that merely
  // look alike in pinyin (晓明 / 晓敏, twins' names).
  const bool both_han = ha != 0 && hb != 0;
  if (jw >= 0.94) return both_han ? 2 : 1;
  if (jw >= 0.85) return 2;
  return 3;
}

std::uint8_t exact_level(std::string_view a, std::string_view b) noexcept {
  if (a.empty() || b.empty()) return missing_level;
  return a == b ? 0 : 1;
}

std::uint8_t jw_level(std::string_view a, std::string_view b, double high, double low) noexcept {
  if (a.empty() || b.empty()) return missing_level;
  if (a == b) return 0;
  const double jw = jaro_winkler(a, b);
  if (jw >= high) return 1;
  if (low > 0 && jw >= low) return 2;
  return low > 0 ? 3 : 2;
}

std::uint8_t edit_level(std::string_view a, std::string_view b) noexcept {
  if (a.empty() || b.empty()) return missing_level;
  if (a == b) return 0;
  return edit_distance(a, b, 1) <= 1 ? 1 : 2;
}

// JW of `whole` against x+y, with x+y built in a stack buffer.
double concat_jw(std::string_view whole, std::string_view x, std::string_view y) noexcept {
  std::array<char, 64> buf{};
  const std::size_t nx = std::min<std::size_t>(x.size(), 64);
  const std::size_t ny = std::min<std::size_t>(y.size(), 64 - nx);
  std::copy_n(x.data(), nx, buf.data());
  std::copy_n(y.data(), ny, buf.data() + nx);
  return jaro_winkler(whole, std::string_view(buf.data(), nx + ny));
}

void compare_names(const features_view& a, const features_view& b, comparison& c) noexcept {
  auto& fam = c.level[static_cast<std::size_t>(field::family)];
  auto& giv = c.level[static_cast<std::size_t>(field::given)];
  fam = name_level(a.family, b.family, a.han_family, b.han_family);
  giv = name_level(a.given, b.given, a.han_given, b.han_given);
  const bool a_full = !a.family.empty() && !a.given.empty();
  const bool b_full = !b.family.empty() && !b.given.empty();
  if (a_full && b_full) {
    // Western order ("San Zhang") against Chinese order ("Zhang San").
    if (fam != 0 || giv != 0) {
      const auto fx = name_level(a.family, b.given, a.han_family, b.han_given);
      const auto gx = name_level(a.given, b.family, a.han_given, b.han_family);
      // Only a clean swap counts: a loose cross match ("Wei Li" against
      // "Liu Wei") is how one-syllable names of two people look alike.
      if (fx <= 1 && gx <= 1 && fx + gx < fam + giv) {
        fam = fx;
        giv = gx;
        c.names_swapped = true;
      }
    }
    return;
  }
  // One side holds the whole name in one part ("zhangsan" that could not be
  // split): compare it against the other side's parts run together.
  if (a_full != b_full) {
    const features_view& full = a_full ? a : b;
    const features_view& part = a_full ? b : a;
    const std::string_view whole = part.family.empty() ? part.given : part.family;
    if (whole.empty()) return;
    const double straight = concat_jw(whole, full.family, full.given);
    const double swapped = concat_jw(whole, full.given, full.family);
    const double best = std::max(straight, swapped);
    if (best >= 0.94) {
      const std::uint8_t l = best >= 1.0 ? 0 : 1;
      fam = l;
      giv = l;
      c.names_swapped = swapped > straight;
    }
  }
}

}  // namespace

comparison compare(const features_view& a, const features_view& b) noexcept {
  comparison c;
  c.level.fill(missing_level);
  compare_names(a, b, c);
  auto set = [&](field f, std::uint8_t l) { c.level[static_cast<std::size_t>(f)] = l; };

  switch (compare_dates(a.birth, b.birth)) {
    case date_agreement::exact: set(field::birth_date, 0); break;
    case date_agreement::typo: set(field::birth_date, 1); break;
    case date_agreement::partial: set(field::birth_date, 2); break;
    case date_agreement::disagree: set(field::birth_date, 3); break;
    case date_agreement::missing: break;
  }
  if (a.sex != sex::unknown && b.sex != sex::unknown) set(field::sex, lvl(a.sex == b.sex ? 0 : 1));
  set(field::phone, exact_level(a.phone, b.phone));
  set(field::resident_id, exact_level(a.resident_id, b.resident_id));
  std::uint8_t card = missing_level;
  for (std::size_t i = 0; i < max_card_systems; ++i) {
    const auto l = edit_level(a.cards[i], b.cards[i]);
    if (l != missing_level && (card == missing_level || l < card)) card = l;
  }
  set(field::card, card);
  set(field::postcode, edit_level(a.postcode, b.postcode));
  set(field::city, jw_level(a.city, b.city, 0.90, 0));
  auto street = jw_level(a.street, b.street, 0.90, 0.75);
  auto line2 = jw_level(a.line2, b.line2, 0.90, 0);
  if ((street != 0 && street != missing_level) || (line2 != 0 && line2 != missing_level)) {
    // Address lines entered in each other's place; only a clean swap counts.
    const auto sx = jw_level(a.street, b.line2, 0.90, 0.75), lx = jw_level(a.line2, b.street, 0.90, 0);
    const auto sum = [](std::uint8_t x, std::uint8_t y) { return (x == missing_level ? 4 : x) + (y == missing_level ? 4 : y); };
    if (sx <= 1 && lx <= 1 && sum(sx, lx) < sum(street, line2)) {
      street = sx;
      line2 = lx;
    }
  }
  set(field::street, street);
  set(field::street_number, exact_level(a.street_number, b.street_number));
  set(field::line2, line2);
  set(field::province, exact_level(a.province, b.province));
  return c;
}

double score(const comparison& c, const field_weights& w) noexcept {
  double s = 0;
  for (std::size_t f = 0; f < field_count; ++f) {
    const auto l = c.level[f];
    if (l != missing_level && l < max_levels) s += w.w[f][l];
  }
  return s;
}

bool names_agree(const comparison& c) noexcept {
  const auto fam = c.level_of(field::family), giv = c.level_of(field::given);
  if (fam != missing_level && giv != missing_level) return fam <= 2 && giv <= 2;
  if (fam != missing_level) return fam <= 1;
  if (giv != missing_level) return giv <= 1;
  return false;
}

thresholds thresholds_for(const match_options& opt, double persons) noexcept {
  thresholds t{.upper = opt.upper, .lower = opt.lower};
  if (opt.scale_with_population && persons > 1.0) {
    const double bits = std::log2(persons);
    t.upper = std::max(t.upper, bits + opt.link_margin);
    t.lower = std::max(t.lower, bits + opt.review_margin);
  }
  t.lower = std::min(t.lower, t.upper);
  return t;
}

bool corroborated(const comparison& c) noexcept {
  auto at_most = [&](field f, std::uint8_t l) { return c.level_of(f) <= l; };  // missing_level is 0xFF
  return at_most(field::resident_id, 0) || at_most(field::card, 1) || at_most(field::phone, 0) ||
         at_most(field::street, 1) || at_most(field::line2, 1) ||
         (at_most(field::street_number, 0) && at_most(field::postcode, 0));
}

pair_verdict decide(const features_view& /*a*/, const features_view& /*b*/, const comparison& c, bool same_domain,
                    const match_options& opt, const population_context& tf) noexcept {
  pair_verdict out;
  out.score = score(c, opt.weights);
  // Term-frequency weighting of exact agreement (see population_context):
  // the configured u is replaced by the value's observed share.
  auto adjust = [&](field f, double freq, std::uint8_t level) {
    const auto i = static_cast<std::size_t>(f);
    if (c.level[i] != level || freq <= 0.0) return;
    out.score += std::log2(std::max(opt.weights.m[i][level], 1e-9) / freq) - opt.weights.w[i][level];
  };
  // When the names were aligned swapped, the frequencies belong to the other part.
  adjust(field::family, c.names_swapped ? tf.given : tf.family, 0);
  adjust(field::given, c.names_swapped ? tf.family : tf.given, 0);
  adjust(field::city, tf.city, 0);
  // Households share the phone, the surname and the district: once the
  // phone agrees, surname and district agreement are what a household
  // member shows anyway, not further evidence (the score's independence
  // assumption would count the household three times). Their u given a
  // shared phone: 0.8 for the surname, 1 for the district.
  if (c.level_of(field::phone) == 0) {
    auto household = [&](field f, double u_given_phone) {
      const auto i = static_cast<std::size_t>(f);
      if (c.level[i] != 0) return;
      const double freq = f == field::family ? (c.names_swapped ? tf.given : tf.family) : tf.city;
      const double current = freq > 0.0 ? std::log2(std::max(opt.weights.m[i][0], 1e-9) / freq) : opt.weights.w[i][0];
      out.score += std::min(current, std::log2(opt.weights.m[i][0] / u_given_phone)) - current;
    };
    household(field::family, 0.8);
    household(field::city, 1.0);
  }
  const thresholds th = thresholds_for(opt, tf.persons);
  const bool rid_conflict = c.level_of(field::resident_id) == 1;
  const bool identifier_agrees = c.level_of(field::resident_id) == 0 || c.level_of(field::card) == 0;
  const bool birth_exact = c.level_of(field::birth_date) == 0;

  // Deterministic rules: an identifier only a person holds, confirmed by name
  // and birth date. A resident ID that failed validation is not in the
  // features at all, so it can never reach this point.
  // Two records of one hospital are still the hospital's to merge (A40),
  // even when a rule says they are one person: held for review.
  const bool domain_hold = opt.hold_same_domain && same_domain;
  if (opt.rule_resident_id && c.level_of(field::resident_id) == 0 && names_agree(c) && birth_exact) {
    out.v = domain_hold ? verdict::review : verdict::link;
    out.held = domain_hold ? hold::same_domain : hold::none;
    out.by = rule::resident_id;
    return out;
  }
  if (opt.rule_card && c.level_of(field::card) == 0 && names_agree(c) && birth_exact) {
    out.by = rule::card;
    if (rid_conflict && opt.hold_conflicting_resident_id) {
      out.v = verdict::review;
      out.held = hold::conflicting_resident_id;
    } else if (domain_hold) {
      out.v = verdict::review;
      out.held = hold::same_domain;
    } else {
      out.v = verdict::link;
    }
    return out;
  }

  if (out.score < th.lower) return out;
  if (out.score < th.upper) {
    out.v = verdict::review;
    out.by = rule::probabilistic;
    return out;
  }
  out.v = verdict::link;
  out.by = rule::probabilistic;
  auto hold_if = [&](bool condition, hold h) {
    if (out.held == hold::none && condition) {
      out.v = verdict::review;
      out.held = h;
    }
  };
  const auto fam = c.level_of(field::family), giv = c.level_of(field::given);
  if (rid_conflict && !corroborated(c)) {
    // Two valid, different resident IDs and nothing but name, birth date
    // and region in common: namesakes. Not even worth a review.
    out.v = verdict::no_link;
    out.held = hold::conflicting_resident_id;
    return out;
  }
  hold_if(opt.hold_conflicting_resident_id && rid_conflict, hold::conflicting_resident_id);
  // Twins and siblings share surname, address and phone; only a first name
  // (or a birth date) tells them apart, so a contradiction there is never
  // outvoted by the rest unless an identifier agrees.
  hold_if(opt.hold_name_disagrees && !identifier_agrees && (fam == 3 || giv == 3), hold::name_disagrees);
  // An identifier under an entirely different name is somebody else's number
  // (a parent's ID used for a child, a number typed into the wrong record).
  hold_if(opt.hold_name_disagrees && fam == 3 && giv == 3, hold::name_disagrees);
  // A surname only similar (zhang / zhao, 张 / 章 typed as another sound) with
  // no identifier: a household member of the other surname looks the same.
  hold_if(opt.hold_name_disagrees && !identifier_agrees && fam == 2, hold::name_disagrees);
  // Twins share surname, birth date and household; a given name that is only
  // "similar" is what a twin's name looks like as often as a typo does.
  hold_if(opt.hold_given_name_similar && !identifier_agrees && giv == 2, hold::given_name_similar);
  // A given name only close (same sound, other characters: 张伟 / 张薇 / "Zhang
  // Wei"; or one keystroke off) under the same birth date is also how twins
  // look; without an identifier, a human decides.
  hold_if(opt.hold_given_name_similar && !identifier_agrees && giv == 1 && c.level_of(field::birth_date) == 0,
          hold::given_name_similar);
  hold_if(opt.hold_birth_date_disagrees && !identifier_agrees && c.level_of(field::birth_date) == 3,
          hold::birth_date_disagrees);
  hold_if(opt.hold_uncorroborated && !corroborated(c), hold::uncorroborated);
  hold_if(opt.hold_same_domain && same_domain, hold::same_domain);
  return out;
}

em_result estimate_weights(std::span<const comparison> pairs, const field_weights& start, int max_iterations) {
  // Distinct vectors with counts.
  std::map<std::array<std::uint8_t, field_count>, double> counted;
  for (const auto& c : pairs) counted[c.level] += 1.0;
  std::vector<std::pair<std::array<std::uint8_t, field_count>, double>> patterns(counted.begin(), counted.end());

  em_result r{.weights = start};
  field_weights& w = r.weights;
  double p = 0.1;
  std::vector<double> g(patterns.size());
  constexpr double floor = 1e-6;
  for (int it = 0; it < max_iterations; ++it) {
    // E: posterior match probability of each pattern.
    for (std::size_t i = 0; i < patterns.size(); ++i) {
      double lm = std::log(p), lu = std::log(1.0 - p);
      for (std::size_t f = 0; f < field_count; ++f) {
        const auto l = patterns[i].first[f];
        if (l == missing_level) continue;
        lm += std::log(std::max(w.m[f][l], floor));
        lu += std::log(std::max(w.u[f][l], floor));
      }
      g[i] = 1.0 / (1.0 + std::exp(std::clamp(lu - lm, -700.0, 700.0)));
    }
    // M: re-estimate p, m, u.
    double total = 0, matched = 0;
    std::array<std::array<double, max_levels>, field_count> mc{}, uc{};
    for (std::size_t i = 0; i < patterns.size(); ++i) {
      const double n = patterns[i].second;
      total += n;
      matched += n * g[i];
      for (std::size_t f = 0; f < field_count; ++f) {
        const auto l = patterns[i].first[f];
        if (l == missing_level) continue;
        mc[f][l] += n * g[i];
        uc[f][l] += n * (1.0 - g[i]);
      }
    }
    double change = std::abs(matched / total - p);
    p = std::clamp(matched / total, floor, 1.0 - floor);
    for (std::size_t f = 0; f < field_count; ++f) {
      const std::size_t levels = level_count(static_cast<field>(f));
      double ms = 0, us = 0;
      for (std::size_t l = 0; l < levels; ++l) ms += mc[f][l], us += uc[f][l];
      if (ms <= 0 || us <= 0) continue;  // field never present: keep the start values
      for (std::size_t l = 0; l < levels; ++l) {
        const double nm = std::max(mc[f][l] / ms, floor), nu = std::max(uc[f][l] / us, floor);
        change = std::max({change, std::abs(nm - w.m[f][l]), std::abs(nu - w.u[f][l])});
        w.m[f][l] = nm;
        w.u[f][l] = nu;
      }
    }
    r.iterations = it + 1;
    if (change < 1e-7) break;
  }
  r.match_share = p;
  w.finalize();
  return r;
}

}  // namespace yilian::identity
