/* dump.c: JSON serialized on the stack (see dump.h).
 *
 * SPDX-License-Identifier: MIT
 */
#include "autoconfig.h"
#include <string.h>

#include "dump.h"

static int dump_cb(const char *p, size_t len, void *data)
{
    return jsond_dump_bytes(data, p, len);
}

int jsond_dump_bytes(jsond_dumper *d, const char *p, size_t len)
{
    if (d->n + len <= sizeof d->buf) {
        memcpy(d->buf + d->n, p, len);
        d->n += len;
        return 0;
    }
    if (!d->spill && !(d->spill = evbuffer_new()))
        return -1;
    if (evbuffer_add(d->spill, d->buf, d->n) < 0)
        return -1;
    d->n = 0;
    if (len > sizeof d->buf)
        return evbuffer_add(d->spill, p, len);
    memcpy(d->buf, p, len);
    d->n = len;
    return 0;
}

int jsond_dump(jsond_dumper *d, const json_t *doc)
{
    return json_dump_callback(doc, dump_cb, d, JSON_COMPACT | JSON_ENCODE_ANY);
}
