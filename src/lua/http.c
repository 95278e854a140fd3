/*
 * lua/http.c - the HTTP/1.1 response of an http_check, read strictly
 * (RFC 9112): the status line, the header lines up to the empty line, and
 * for the 'body' option the body's first bytes (Content-Length, chunked,
 * or up to the close). No Lua here: bytes in, a verdict out. The caller's
 * buffer caps what is read: a header longer than LU_HTTP_HEAD is an
 * error, a body is cut at what the buffer holds.
 */
#include <stdio.h>
#include <string.h>

#include "binding.h"

/* tchar of RFC 9110: the characters of a header name */
static int lu_tchar(unsigned char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
         (c >= 'A' && c <= 'Z') || (c && strchr("!#$%&'*+-.^_`|~", c));
}

/* field-vchar, SP, HTAB, obs-text: what a header value and a reason
 * phrase may hold */
static int lu_vchar(unsigned char c) {
  return c == ' ' || c == '\t' || (c >= 0x21 && c != 0x7f);
}

/* The first bytes of p, printable, quoted: for a message. */
static void lu_excerpt(char *out, size_t cap, const char *p, size_t n) {
  size_t i, o = 0;
  if (cap < 8) return;
  out[o++] = '"';
  for (i = 0; i < n && o + 6 < cap; i++) {
    unsigned char c = (unsigned char)p[i];
    if (c == '\r') o += (size_t)snprintf(out + o, cap - o, "\\r");
    else if (c == '\n') o += (size_t)snprintf(out + o, cap - o, "\\n");
    else if (c < 0x20 || c >= 0x7f || c == '"' || c == '\\')
      o += (size_t)snprintf(out + o, cap - o, "\\x%02x", c);
    else out[o++] = (char)c;
  }
  if (i < n && o + 4 < cap) o += (size_t)snprintf(out + o, cap - o, "...");
  out[o++] = '"';
  out[o] = '\0';
}

static int lu_bad(char *err, size_t errlen, const char *what, const char *p,
                  size_t n) {
  char ex[64];
  lu_excerpt(ex, sizeof ex, p, n > 40 ? 41 : n);
  snprintf(err, errlen, "%s: %s", what, ex);
  return -1;
}

/* Case-insensitive: does the header line (name ':' value) have name? */
static int lu_is_header(const char *line, size_t namelen, const char *name) {
  size_t i;
  if (strlen(name) != namelen) return 0;
  for (i = 0; i < namelen; i++) {
    char a = line[i], b = name[i];
    if (a >= 'A' && a <= 'Z') a = (char)(a - 'A' + 'a');
    if (a != b) return 0;
  }
  return 1;
}

/* The status line, p[0..n) without its CRLF: HTTP/1.x SP 3DIGIT SP reason */
static int lu_status_line(const char *p, size_t n, int *status, char *err,
                          size_t errlen) {
  size_t i;
  if (n < 13 || memcmp(p, "HTTP/1.", 7) != 0 || p[7] < '0' || p[7] > '9' ||
      p[8] != ' ' || p[9] < '1' || p[9] > '5' || p[10] < '0' || p[10] > '9' ||
      p[11] < '0' || p[11] > '9' || p[12] != ' ')
    return lu_bad(err, errlen, "bad status line", p, n);
  for (i = 13; i < n; i++)
    if (!lu_vchar((unsigned char)p[i]))
      return lu_bad(err, errlen, "bad status line", p, n);
  *status = (p[9] - '0') * 100 + (p[10] - '0') * 10 + (p[11] - '0');
  return 0;
}

/* Walks a chunked body p[0..n): returns -1 on bad syntax, else the bytes
 * of data found; *complete when the last chunk and its trailer ended.
 * With write, the data is moved to the front of p (in place: it only ever
 * moves left). */
static long lu_chunks(char *p, size_t n, int write, int *complete) {
  size_t i = 0, out = 0;
  *complete = 0;
  for (;;) {
    size_t size = 0, digits = 0, take;
    while (i < n && ((p[i] >= '0' && p[i] <= '9') ||
                     (p[i] >= 'a' && p[i] <= 'f') ||
                     (p[i] >= 'A' && p[i] <= 'F'))) {
      int d = p[i] <= '9' ? p[i] - '0' : (p[i] | 0x20) - 'a' + 10;
      if (++digits > 8) return -1;
      size = size * 16 + (size_t)d;
      i++;
    }
    if (i >= n) return (long)out;
    if (digits == 0) return -1;
    while (i < n && p[i] != '\r') { /* chunk extensions */
      if (p[i] == '\n') return -1;
      i++;
    }
    if (i + 1 >= n) return (long)out;
    if (p[i + 1] != '\n') return -1;
    i += 2;
    if (size == 0) { /* the last chunk: trailer lines, then CRLF */
      for (;;) {
        const char *e;
        if (i + 1 >= n) return (long)out;
        e = memchr(p + i, '\n', n - i);
        if (!e) return (long)out;
        if ((size_t)(e - p) == i || e[-1] != '\r') return -1;
        if ((size_t)(e - p) == i + 1) {
          *complete = 1;
          return (long)out;
        }
        i = (size_t)(e - p) + 1;
      }
    }
    take = size < n - i ? size : n - i;
    if (write) memmove(p + out, p + i, take);
    out += take;
    i += take;
    if (take < size) return (long)out;
    if (i + 1 >= n) return (long)out;
    if (p[i] != '\r' || p[i + 1] != '\n') return -1;
    i += 2;
  }
}

int lu_http_parse(char *buf, size_t len, int final, int want_body, lu_http *h,
                  char *err, size_t errlen) {
  size_t scan = len < LU_HTTP_HEAD ? len : LU_HTTP_HEAD, i, head = 0, line;
  const char *eol;
  long long clen = -1;
  int chunked = 0;
  /* garbage fails at its first bytes, not at the deadline */
  if (memcmp(buf, "HTTP/", len < 5 ? len : 5) != 0)
    return lu_bad(err, errlen, "not an HTTP response", buf, len);
  eol = memchr(buf, '\n', scan);
  if (eol) {
    if (eol == buf || eol[-1] != '\r')
      return lu_bad(err, errlen, "bad status line", buf, (size_t)(eol - buf));
    if (lu_status_line(buf, (size_t)(eol - buf) - 1, &h->status, err, errlen))
      return -1;
  }
  /* the end of the head: an empty line */
  for (i = 3; i < scan; i++)
    if (buf[i] == '\n' && buf[i - 1] == '\r' && buf[i - 2] == '\n' &&
        buf[i - 3] == '\r') {
      head = i + 1;
      break;
    }
  if (!head) {
    if (len >= LU_HTTP_HEAD) {
      snprintf(err, errlen, "response header over %d bytes", LU_HTTP_HEAD);
      return -1;
    }
    if (final) {
      snprintf(err, errlen, len == 0
                                ? "connection closed with no response"
                                : "connection closed before the end of the "
                                  "response header");
      return -1;
    }
    return 0;
  }
  /* the header lines, between the status line and the empty line */
  for (line = (size_t)(eol - buf) + 1; line < head - 2;) {
    const char *p = buf + line, *e = memchr(p, '\n', head - line), *colon;
    size_t n, k;
    if (!e || e == p || e[-1] != '\r')
      return lu_bad(err, errlen, "bad header line", p, e ? (size_t)(e - p) : 0);
    n = (size_t)(e - p) - 1;
    colon = memchr(p, ':', n);
    if (!colon || colon == p)
      return lu_bad(err, errlen, "bad header line", p, n);
    for (k = 0; p + k < colon; k++)
      if (!lu_tchar((unsigned char)p[k]))
        return lu_bad(err, errlen, "bad header line", p, n);
    for (k = (size_t)(colon - p) + 1; k < n; k++)
      if (!lu_vchar((unsigned char)p[k]))
        return lu_bad(err, errlen, "bad header line", p, n);
    {
      const char *v = colon + 1, *ve = p + n;
      size_t nl = (size_t)(colon - p);
      while (v < ve && (*v == ' ' || *v == '\t')) v++;
      while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t')) ve--;
      if (lu_is_header(p, nl, "content-length")) {
        long long c = 0;
        if (v == ve) return lu_bad(err, errlen, "bad Content-Length", p, n);
        for (; v < ve; v++) {
          if (*v < '0' || *v > '9' || c > 1000000000000LL)
            return lu_bad(err, errlen, "bad Content-Length", p, n);
          c = c * 10 + (*v - '0');
        }
        if (clen >= 0 && clen != c)
          return lu_bad(err, errlen, "conflicting Content-Length", p, n);
        clen = c;
      } else if (lu_is_header(p, nl, "transfer-encoding")) {
        size_t vl = (size_t)(ve - v);
        chunked = vl >= 7 && lu_is_header(ve - 7, 7, "chunked");
      }
    }
    line = (size_t)(e - buf) + 1;
  }
  h->body = buf + head;
  h->body_len = 0;
  if (!want_body) return 1;
  {
    size_t blen = len - head;
    if (chunked) {
      int complete;
      long got = lu_chunks(buf + head, blen, 0, &complete);
      if (got < 0) return lu_bad(err, errlen, "bad chunked body", buf + head, blen);
      if (!complete && !final) return 0;
      h->body_len = (size_t)lu_chunks(buf + head, blen, 1, &complete);
      return 1;
    }
    if (clen >= 0 && (long long)blen >= clen) {
      h->body_len = (size_t)clen;
      return 1;
    }
    if (!final) return 0;
    h->body_len = blen; /* closed (or capped) before Content-Length */
    return 1;
  }
}
