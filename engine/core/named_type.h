// Strong id types: a hospital_id is not a patient_id even though both are strings.
#pragma once

#include <compare>
#include <functional>
#include <string>
#include <string_view>
#include <utility>

namespace yilian {

template <class T, class Tag>
class named_type {
 public:
  using value_type = T;
  named_type() = default;
  explicit named_type(T v) : value_(std::move(v)) {}
  const T& value() const noexcept { return value_; }
  auto operator<=>(const named_type&) const = default;
  bool operator==(const named_type&) const = default;

 private:
  T value_{};
};

using hospital_id = named_type<std::string, struct hospital_id_tag>;
using patient_id = named_type<std::string, struct patient_id_tag>;
using referral_id = named_type<std::string, struct referral_id_tag>;
using equipment_id = named_type<std::string, struct equipment_id_tag>;
using principal_id = named_type<std::string, struct principal_id_tag>;
using event_id = named_type<std::string, struct event_id_tag>;

}  // namespace yilian

template <class T, class Tag>
struct std::hash<yilian::named_type<T, Tag>> {
  std::size_t operator()(const yilian::named_type<T, Tag>& v) const noexcept {
    return std::hash<T>{}(v.value());
  }
};
