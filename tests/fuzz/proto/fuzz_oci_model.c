/* libFuzzer target for the OCI image model (proto/oci_model.h): the first byte picks the
 * document kind (manifest + Nydus view, index + platform selection, config); the rest is the
 * document. Results are walked so ASan sees every pointer the parsers hand out. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto/oci_model.h"

static void walk(const proto_oci_desc *d)
{
    if (strlen(d->media_type) >= sizeof(d->media_type) || strlen(d->digest) != 71) abort();
    for (size_t i = 0; i < d->n_annotations; i++)
        if (!d->annotations[i].key || !d->annotations[i].value) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    unsigned sel = data[0] % 3;
    const char *s = (const char *)data + 1;
    size_t n = size - 1;
    cf_err err = {0};
    switch (sel) {
    case 0: {
        proto_oci_manifest m;
        if (proto_oci_manifest_parse(s, n, NULL, &m, &err) == 0) {
            walk(&m.config);
            for (size_t i = 0; i < m.n_layers; i++) walk(&m.layers[i]);
            proto_nydus_view v;
            if (proto_nydus_view_get(&m, &v, &err) == 0) {
                walk(v.bootstrap);
                for (size_t i = 0; i < v.n_blobs; i++) walk(v.blobs[i]);
                proto_nydus_view_free(&v);
            }
        }
        proto_oci_manifest_free(&m);
        break;
    }
    case 1: {
        proto_oci_index ix;
        if (proto_oci_index_parse(s, n, "application/vnd.oci.image.index.v1+json", &ix, &err) == 0) {
            const proto_oci_desc *d;
            proto_oci_platform p;
            proto_oci_platform_parse("linux/arm64", &p, NULL);
            if (proto_oci_index_select(&ix, NULL, PROTO_OCI_SELECT_NYDUS, &d, &err) == 0) walk(d);
            if (proto_oci_index_select(&ix, &p, 0, &d, &err) == 0) walk(d);
        }
        proto_oci_index_free(&ix);
        break;
    }
    default: {
        proto_oci_config c;
        if (proto_oci_config_parse(s, n, &c, &err) == 0)
            for (size_t i = 0; i < c.n_diff_ids; i++)
                if (strlen(c.diff_ids[i]) != 71) abort();
        proto_oci_config_free(&c);
        break;
    }
    }
    return 0;
}
