/* SPDX-License-Identifier: MIT */
#include "autoconfig.h"
#include "jsond.h"

const char *jsond_version(void)
{
    return VERSION;
}
