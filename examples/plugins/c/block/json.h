// Just enough JSON for the example: find a top-level field of an object.
// Strings are taken as they are (escapes are not decoded).

#include <stdbool.h>
#include <stddef.h>
#include <string.h>

typedef struct {
    const char *at, *end;
} json_cursor;

static void json_ws(json_cursor *c) {
    while (c->at < c->end && strchr(" \t\r\n", *c->at)) c->at++;
}

// Skips a string at the cursor; the text between the quotes is [*from, *to).
static bool json_string(json_cursor *c, const char **from, const char **to) {
    if (c->at >= c->end || *c->at != '"') return false;
    const char *start = ++c->at;
    while (c->at < c->end && *c->at != '"') c->at += (*c->at == '\\') ? 2 : 1;
    if (c->at >= c->end) return false;
    if (from) *from = start;
    if (to) *to = c->at;
    c->at++;
    return true;
}

static bool json_skip(json_cursor *c) {
    json_ws(c);
    if (c->at >= c->end) return false;
    if (*c->at == '"') return json_string(c, NULL, NULL);
    if (*c->at == '{' || *c->at == '[') {
        int depth = 0;
        while (c->at < c->end) {
            if (*c->at == '"') {
                if (!json_string(c, NULL, NULL)) return false;
                continue;
            }
            if (*c->at == '{' || *c->at == '[') depth++;
            if (*c->at == '}' || *c->at == ']') depth--;
            c->at++;
            if (depth == 0) return true;
        }
        return false;
    }
    while (c->at < c->end && !strchr(",}] \t\r\n", *c->at)) c->at++;
    return true;
}

// Moves the cursor to the value of top-level field `key` of the object at it.
static bool json_field(json_cursor *c, const char *key) {
    json_ws(c);
    if (c->at >= c->end || *c->at != '{') return false;
    c->at++;
    for (;;) {
        json_ws(c);
        const char *from, *to;
        if (!json_string(c, &from, &to)) return false;
        json_ws(c);
        if (c->at >= c->end || *c->at != ':') return false;
        c->at++;
        json_ws(c);
        if ((size_t)(to - from) == strlen(key) && memcmp(from, key, to - from) == 0) return true;
        if (!json_skip(c)) return false;
        json_ws(c);
        if (c->at >= c->end || *c->at != ',') return false;
        c->at++;
    }
}

// Copies the string field `key` of the object in `text` into `out`.
static bool json_string_field(const char *text, size_t len, const char *key, char *out,
                              size_t size) {
    json_cursor c = {text, text + len};
    const char *from, *to;
    if (!json_field(&c, key) || !json_string(&c, &from, &to)) return false;
    size_t n = (size_t)(to - from) < size - 1 ? (size_t)(to - from) : size - 1;
    memcpy(out, from, n);
    out[n] = '\0';
    return true;
}

// Writes the keys of object field `key` as a JSON list body: "a", "b".
// (The host sends them sorted.)
static void json_object_keys(const char *text, size_t len, const char *key, char *out,
                             size_t size) {
    out[0] = '\0';
    json_cursor c = {text, text + len};
    if (!json_field(&c, key) || c.at >= c.end || *c.at != '{') return;
    c.at++;
    size_t used = 0;
    for (;;) {
        json_ws(&c);
        const char *from, *to;
        if (!json_string(&c, &from, &to)) return;
        int n = snprintf(out + used, size - used, "%s\"%.*s\"", used ? ", " : "",
                         (int)(to - from), from);
        if (n < 0 || (size_t)n >= size - used) return;
        used += (size_t)n;
        json_ws(&c);
        if (c.at >= c.end || *c.at != ':') return;
        c.at++;
        if (!json_skip(&c)) return;
        json_ws(&c);
        if (c.at >= c.end || *c.at != ',') return;
        c.at++;
    }
}
