// page.c - the files embedded in the binary: the upload page (src/server/page.html, GET /)
// and the OpenAPI description (docs/api/openapi.yaml, GET /openapi.yaml). They are pulled
// in with the assembler's .incbin (paths relative to the repository root, where make runs),
// so the served text is always the file in the tree; each gets a terminating NUL.
// Rebuild page.o when either file changes (the Makefile lists them as its prerequisites).
#include "internal.h"

__asm__(".section .rodata.fr_assets,\"a\",@progbits\n"
        ".balign 16\n"
        ".globl fr_asset_page_html\n"
        ".hidden fr_asset_page_html\n"
        "fr_asset_page_html:\n"
        ".incbin \"src/server/page.html\"\n"
        ".globl fr_asset_page_html_end\n"
        ".hidden fr_asset_page_html_end\n"
        "fr_asset_page_html_end:\n"
        ".byte 0\n"
        ".balign 16\n"
        ".globl fr_asset_openapi\n"
        ".hidden fr_asset_openapi\n"
        "fr_asset_openapi:\n"
        ".incbin \"docs/api/openapi.yaml\"\n"
        ".globl fr_asset_openapi_end\n"
        ".hidden fr_asset_openapi_end\n"
        "fr_asset_openapi_end:\n"
        ".byte 0\n"
        ".previous\n");

extern const char fr_asset_page_html[], fr_asset_page_html_end[];
extern const char fr_asset_openapi[], fr_asset_openapi_end[];

const char *fr_page_html(size_t *len) {
    *len = (size_t)(fr_asset_page_html_end - fr_asset_page_html);
    return fr_asset_page_html;
}

const char *fr_page_openapi(size_t *len) {
    *len = (size_t)(fr_asset_openapi_end - fr_asset_openapi);
    return fr_asset_openapi;
}
