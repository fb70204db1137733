// yilian::console — the clinic booking page's static files, compiled into the
// binary (engine/api/console/embed.cmake generates the table at build time
// from index.html, app.js and style.css beside this header).
//
// The page is plain HTML/CSS/JS with no framework, CDN or build step: a clinic
// PC without internet access gets everything from the engine it books with.
#pragma once

#include <span>
#include <string_view>

namespace yilian::console {

struct asset {
  std::string_view name;          // "app.js": the last URL segment under /console/
  std::string_view content_type;  // from the extension, with charset for text
  std::string_view bytes;
  std::string_view etag;          // strong ETag, quoted: the start of the file's SHA-256
};

// Every embedded file, in the order the CMake list names them.
std::span<const asset> assets() noexcept;

// The asset called `name`, or nullptr.
const asset* find_asset(std::string_view name) noexcept;

}  // namespace yilian::console
