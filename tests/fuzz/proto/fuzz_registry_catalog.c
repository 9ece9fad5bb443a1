/* libFuzzer target for the catalog and tag list parsers (proto/registry_catalog.h): the first
 * byte picks the parser; the rest is one page. Two pages are parsed into one list (as the
 * pagination appends) and every name is walked and re-checked. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto/registry_catalog.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    const char *s = (const char *)data + 1;
    size_t n = size - 1;
    proto_name_list l = {0};
    cf_err err = {0};
    for (int round = 0; round < 2; round++) {
        int rc = data[0] & 1 ? proto_registry_tags_parse(s, n, "library/app", &l, &err)
                             : proto_registry_catalog_parse(s, n, &l, &err);
        if (rc < 0) break;
    }
    for (size_t i = 0; i < l.n; i++) {
        if (!l.names[i]) abort();
        if ((data[0] & 1 ? proto_registry_check_tag(l.names[i])
                         : proto_registry_check_repo(l.names[i])) < 0)
            abort();
    }
    proto_name_list_free(&l);
    return 0;
}
