/* log.c: the one logging path.
 *
 * The library formats; the program decides where lines go by installing a
 * sink (stderr with timestamps, the journal, a test's buffer). The level is
 * checked before formatting so debug calls cost a load and a compare.
 *
 * SPDX-License-Identifier: MIT
 */
#include "autoconfig.h"
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "jsond.h"

static const struct {
    const char *name;
    jsond_log_level level;
} level_names[] = {
    {"error", JSOND_LOG_ERROR}, {"warning", JSOND_LOG_WARNING}, {"notice", JSOND_LOG_NOTICE},
    {"info", JSOND_LOG_INFO},   {"debug", JSOND_LOG_DEBUG},
};

static void stderr_sink(jsond_log_level level, const char *msg, void *arg)
{
    (void)arg;
    fprintf(stderr, "jsond: %s: %s\n", jsond_log_level_name(level), msg);
}

/* Set once before threads start; the level may change at any time (reload). */
static jsond_log_sink log_sink = stderr_sink;
static void *log_sink_arg;
static atomic_int log_level = JSOND_LOG_INFO;

void jsond_log_set_sink(jsond_log_sink sink, void *arg)
{
    log_sink = sink ? sink : stderr_sink;
    log_sink_arg = sink ? arg : NULL;
}

void jsond_log_set_level(jsond_log_level level)
{
    atomic_store(&log_level, (int)level);
}

jsond_log_level jsond_log_get_level(void)
{
    return (jsond_log_level)atomic_load(&log_level);
}

int jsond_log_level_parse(const char *name, jsond_log_level *out)
{
    for (size_t i = 0; i < sizeof level_names / sizeof level_names[0]; i++) {
        if (strcmp(name, level_names[i].name) == 0) {
            *out = level_names[i].level;
            return 0;
        }
    }
    return -1;
}

const char *jsond_log_level_name(jsond_log_level level)
{
    for (size_t i = 0; i < sizeof level_names / sizeof level_names[0]; i++)
        if (level_names[i].level == level)
            return level_names[i].name;
    return "?";
}

void jsond_vlog(jsond_log_level level, const char *fmt, va_list ap)
{
    if ((int)level > atomic_load(&log_level))
        return;
    /* Long enough for any message we make; longer ones are cut, not lost. */
    char msg[2048];
    vsnprintf(msg, sizeof msg, fmt, ap);
    log_sink(level, msg, log_sink_arg);
}

void jsond_log(jsond_log_level level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    jsond_vlog(level, fmt, ap);
    va_end(ap);
}
