// A JSON value as YAML, for reading (the spec panel): block style, keys in their order,
// strings quoted whenever plain YAML would read them as something else.

const PLAIN = /^[A-Za-z0-9_./][A-Za-z0-9_ ./@+=-]*$/;
const LOOKS_TYPED = /^(true|false|yes|no|on|off|null|~|[-+]?(\d[\d_]*)?(\.\d+)?([eE][-+]?\d+)?|0x[0-9a-fA-F]+)$/i;

function scalar(value) {
  if (value === null || value === undefined) return 'null';
  if (typeof value === 'boolean' || typeof value === 'number') return String(value);
  const text = String(value);
  if (text !== '' && PLAIN.test(text) && !LOOKS_TYPED.test(text) && !text.endsWith(' ')) return text;
  return JSON.stringify(text);
}

function isEmpty(value) {
  return (Array.isArray(value) && value.length === 0)
    || (value && typeof value === 'object' && !Array.isArray(value) && Object.keys(value).length === 0);
}

function block(value, indent) {
  if (Array.isArray(value)) {
    return value.map((item) => {
      if (item && typeof item === 'object' && !isEmpty(item)) {
        const inner = block(item, `${indent}  `);
        return `${indent}- ${inner.slice(indent.length + 2)}`;
      }
      return `${indent}- ${isEmpty(item) ? JSON.stringify(item) : scalar(item)}`;
    }).join('\n');
  }
  return Object.entries(value).map(([key, item]) => {
    const name = scalar(key);
    if (item && typeof item === 'object' && !isEmpty(item)) {
      return `${indent}${name}:\n${block(item, `${indent}  `)}`;
    }
    return `${indent}${name}: ${isEmpty(item) ? JSON.stringify(item) : scalar(item)}`;
  }).join('\n');
}

export function toYaml(value) {
  if (value === null || typeof value !== 'object' || isEmpty(value)) return `${scalar(value)}\n`;
  return `${block(value, '')}\n`;
}
