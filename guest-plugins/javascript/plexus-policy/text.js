// How the Rust SDK writes values into its messages, so that the messages of a policy are the
// same in every language and the same case files check them: `{:?}` of a string, and
// serde_json's `Display` of a JSON value.

// What Rust's `char::escape_debug` writes as `\u{..}`: the characters its `is_printable`
// refuses (general categories Cc, Cf, Cs, Co, Cn, Zl, Zp and Zs but the space) and, in a
// string's `{:?}`, grapheme extenders.
const UNPRINTABLE = /[\p{Cc}\p{Cf}\p{Cs}\p{Co}\p{Cn}\p{Zl}\p{Zp}\p{Zs}\p{Grapheme_Extend}]/u;
const ESCAPES = { '\t': '\\t', '\r': '\\r', '\n': '\\n', '\\': '\\\\', '"': '\\"', '\0': '\\0' };

/** `text` as Rust's `{:?}` writes a string: quoted, escaped like a Rust string literal. */
export function debug(text) {
  let out = '"';
  for (const char of String(text)) {
    if (char in ESCAPES) out += ESCAPES[char];
    else if (char !== ' ' && UNPRINTABLE.test(char)) out += `\\u{${char.codePointAt(0).toString(16)}}`;
    else out += char;
  }
  return out + '"';
}

/** Compares strings as Rust does (by UTF-8 bytes, which is by code point). */
export function compareText(a, b) {
  const left = [...a];
  const right = [...b];
  for (let i = 0; i < Math.min(left.length, right.length); i++) {
    const difference = left[i].codePointAt(0) - right[i].codePointAt(0);
    if (difference !== 0) return difference;
  }
  return left.length - right.length;
}

/**
 * `value` as serde_json prints a `serde_json::Value` (compact, object keys sorted as its
 * map sorts them, floats in Rust's shortest form).
 */
export function jsonText(value) {
  if (Array.isArray(value)) return `[${value.map(jsonText).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const keys = Object.keys(value).sort(compareText);
    return `{${keys.map((key) => `${JSON.stringify(key)}:${jsonText(value[key])}`).join(',')}}`;
  }
  if (typeof value === 'number') return rustNumber(value);
  return JSON.stringify(value);
}

/** A JSON number as serde_json prints it: integers as they are, floats always with a `.` or exponent. */
function rustNumber(number) {
  if (Number.isInteger(number) && Math.abs(number) <= Number.MAX_SAFE_INTEGER) return String(number);
  const text = String(number);
  if (text.includes('e')) return text.replace('e+', 'e');
  return text.includes('.') ? text : `${text}.0`;
}

/** The UTF-8 length of `text` in bytes: what Rust's `str::len` counts. */
export function utf8Length(text) {
  let bytes = 0;
  for (const char of text) {
    const code = char.codePointAt(0);
    bytes += code < 0x80 ? 1 : code < 0x800 ? 2 : code < 0x10000 ? 3 : 4;
  }
  return bytes;
}

/** The JSON type of `value` as serde's "invalid type" errors name it. */
export function jsonKind(value) {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'a sequence';
  if (typeof value === 'string') return `string ${debug(value)}`;
  if (typeof value === 'boolean') return `boolean \`${value}\``;
  if (typeof value === 'number') {
    return Number.isInteger(value) ? `integer \`${value}\`` : `floating point \`${rustNumber(value)}\``;
  }
  return 'a map';
}

// Rust's `str::trim` removes Unicode White_Space, which differs from JavaScript's `trim`
// (U+0085 is white space to Rust, U+FEFF only to JavaScript).
const LEADING_SPACE = /^\p{White_Space}+/u;
const TRAILING_SPACE = /\p{White_Space}+$/u;

/** `text` without leading and trailing white space, as Rust's `str::trim` gives it. */
export function trim(text) {
  return text.replace(LEADING_SPACE, '').replace(TRAILING_SPACE, '');
}

/** `text` without leading white space, as Rust's `str::trim_start` gives it. */
export function trimStart(text) {
  return text.replace(LEADING_SPACE, '');
}

/** Whether `text` holds a character that is white space to Rust (`char::is_whitespace`). */
export function hasWhiteSpace(text) {
  return /\p{White_Space}/u.test(text);
}
