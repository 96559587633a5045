/*
 * apps/quote.c: each language's quoting against outputs written out by
 * hand, hostile inputs first (newline, CR, quote, backslash, backquote,
 * other control characters, comma).  The inputs that matter are the ones
 * that once broke out: a newline in --out ran system() from plot.gp.
 */
#include <config.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "quote.h"

struct out {
	char *buf;
	size_t len;
	FILE *f;
};

static void out_open(struct out *o)
{
	o->buf = NULL;
	o->len = 0;
	o->f = open_memstream(&o->buf, &o->len);
	cr_assert_not_null(o->f);
}

/* closes the stream; the caller frees the text */
static char *out_text(struct out *o)
{
	cr_assert_eq(fclose(o->f), 0);
	return o->buf;
}

static char *gnuplot_of(const char *s, size_t n, int *ret)
{
	struct out o;

	out_open(&o);
	*ret = quote_gnuplot(o.f, s, n);
	return out_text(&o);
}

static char *csv_of(const char *s)
{
	struct out o;

	out_open(&o);
	quote_csv(o.f, s);
	return out_text(&o);
}

static char *kv_of(const char *s)
{
	struct out o;

	out_open(&o);
	quote_kv(o.f, s);
	return out_text(&o);
}

Test(ctl, finds_the_first_control_character)
{
	const char *s = "run\nsystem(\"id\")\n#";

	cr_assert_null(quote_find_ctl(""));
	cr_assert_null(quote_find_ctl("runs/asgd-rescaled"));
	cr_assert_null(quote_find_ctl("it's \"q\" \\ ` $(x) ; # , \xc3\xa9"));
	cr_assert_eq(quote_find_ctl(s), s + 3);
	for (int c = 1; c < 0x20; c++) {
		char t[4] = { 'a', (char)c, 'b', 0 };

		cr_assert_eq(quote_find_ctl(t), t + 1, "byte 0x%02x", c);
	}
	cr_assert_not_null(quote_find_ctl("del\x7f"));
}

Test(gnuplot, quotes_doubled_and_nothing_else_changed)
{
	static const struct {
		const char *in, *want;
	} cases[] = {
		{ "runs/asgd", "'runs/asgd'" },
		{ "", "''" },
		{ "it's", "'it''s'" },
		{ "''", "''''''" },
		{ "'); system('id'); print('", "'''); system(''id''); print('''" },
		/* gnuplot runs backquotes in "..." strings, never in '...' */
		{ "a`id`b", "'a`id`b'" },
		{ "@macro $(id) ; # \"dq\"", "'@macro $(id) ; # \"dq\"'" },
		/* a backslash is literal in '...', even last (no continuation) */
		{ "back\\slash\\", "'back\\slash\\'" },
		{ "caf\xc3\xa9", "'caf\xc3\xa9'" },
	};
	int ret;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *s = gnuplot_of(cases[i].in, strlen(cases[i].in), &ret);

		cr_assert_eq(ret, 0, "case %zu", i);
		cr_assert_str_eq(s, cases[i].want, "case %zu", i);
		free(s);
	}
}

Test(gnuplot, writes_at_most_n_bytes)
{
	int ret;
	char *s = gnuplot_of("labels/", 6, &ret);

	cr_assert_eq(ret, 0);
	cr_assert_str_eq(s, "'labels'");
	free(s);
	/* a control character past n is not written, so it does not count */
	s = gnuplot_of("ab\ncd", 2, &ret);
	cr_assert_eq(ret, 0);
	cr_assert_str_eq(s, "'ab'");
	free(s);
}

Test(gnuplot, control_characters_refused_and_nothing_written)
{
	static const char *const hostile[] = {
		"run\nsystem(\"id>pwned\")\n#",	/* the attack that worked */
		"cr\rplot",
		"tab\there",
		"esc\x1b[31m",
		"del\x7f",
		"\x01",
		"ends with newline\n",
	};
	int ret;

	for (size_t i = 0; i < sizeof(hostile) / sizeof(hostile[0]); i++) {
		char *s = gnuplot_of(hostile[i], strlen(hostile[i]), &ret);

		cr_assert_eq(ret, -EINVAL, "case %zu", i);
		cr_assert_str_eq(s, "", "case %zu wrote '%s'", i, s);
		free(s);
	}
}

Test(csv, rfc4180_quoting)
{
	static const struct {
		const char *in, *want;
	} cases[] = {
		{ "shm", "shm" },
		{ "", "" },
		{ "a,b", "\"a,b\"" },
		{ "say \"hi\"", "\"say \"\"hi\"\"\"" },
		{ "\"", "\"\"\"\"" },
		{ "line1\nline2", "\"line1\nline2\"" },
		{ "cr\r", "\"cr\r\"" },
		{ "x\",\"injected\"\n1,2", "\"x\"\",\"\"injected\"\"\n1,2\"" },
		{ " lead", "\" lead\"" },
		{ "trail ", "\"trail \"" },
		/* nothing special to CSV: left as it is */
		{ "back\\slash 'single' tab\tin", "back\\slash 'single' tab\tin" },
		{ "caf\xc3\xa9", "caf\xc3\xa9" },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *s = csv_of(cases[i].in);

		cr_assert_str_eq(s, cases[i].want, "case %zu", i);
		free(s);
	}
}

Test(kv, values_cannot_forge_a_key)
{
	static const struct {
		const char *in, *want;
	} cases[] = {
		/* as it is: what --config reads back unchanged */
		{ "runs/my data.svm", "runs/my data.svm" },
		{ "", "" },
		{ "a = b \"q\" 'q' \\ #x , \xc3\xa9", "a = b \"q\" 'q' \\ #x , \xc3\xa9" },
		/* a newline would start a line of its own: seed = 9 */
		{ "x.svm\nseed = 9", "x.svm\\x0aseed = 9" },
		{ "cr\r\ttab\x1b\x7f\x01", "cr\\x0d\\x09tab\\x1b\\x7f\\x01" },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *s = kv_of(cases[i].in);

		cr_assert_str_eq(s, cases[i].want, "case %zu", i);
		cr_assert_null(strchr(s, '\n'), "case %zu", i);
		free(s);
	}
}
