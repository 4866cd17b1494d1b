/* timeout.h: config durations (milliseconds) as libevent timevals.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef JSOND_TIMEOUT_H
#define JSOND_TIMEOUT_H

#include <sys/time.h>

static inline struct timeval jsond_ms_tv(unsigned ms)
{
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
    return tv;
}

#endif /* JSOND_TIMEOUT_H */
