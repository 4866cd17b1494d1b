/* dump.c: JSON serialized on the stack (see dump.h), by the encoder
 * (encode.h): one pass into the buffer, continued in the spill if it fills.
 *
 * SPDX-License-Identifier: MIT
 */
#include "autoconfig.h"
#include <stdint.h>
#include <string.h>

#include "dump.h"
#include "encode.h"

int jsond_dump_spill(jsond_dumper *d, const char *p, size_t len)
{
    if (d->max && (d->spill ? evbuffer_get_length(d->spill) : 0) + d->n + len > d->max)
        return 1;
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
    struct evbuffer **spill = d->max && d->max <= sizeof d->buf ? NULL : &d->spill;
    return jsond_encode_buf(doc, d->buf, sizeof d->buf, &d->n, spill, d->max ? d->max : SIZE_MAX);
}
