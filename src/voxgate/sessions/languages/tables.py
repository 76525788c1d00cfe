"""The boundary tables of each language (see :mod:`voxgate.sessions.languages`).

Source: written for voxgate from the usage of each language (style guides and everyday
text); no third-party data is copied here. pySBD's language rules (MIT), Unicode CLDR's
segmentation suppressions (Unicode licence) and NLTK's punkt parameters (Apache 2.0) were
weighed and measured against these tables with ``bench/segmentation.py``; the reasons for
writing our own are in ``docs/segmentation.md``.

Entries are separated by commas; keys are lower case, without their final period; a key
of two words ("ad es") is matched with the word before it.
"""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["COMMON", "TABLES", "Table"]


class Table(NamedTuple):
    titles: str = ""  # never end a sentence: a name follows
    abbreviations: str = ""  # end a sentence only before a word of ``starters``
    starters: str = ""  # words that typically start a sentence
    before_numbers: str = ""  # no end when a number follows
    ordinal_words: str = ""  # after "3." these make an ordinal, not a sentence end
    may_end: str = ""  # dotted, yet often the end of a sentence
    openers: str = ""  # prepositions that front a time adverbial: "At 5 a.m. Mr. Smith went"


# Titles and Latin abbreviations understood in every language of the API.
COMMON = Table(
    titles="dr, drs, prof, mr, mrs, ms, mx, st",
    abbreviations="e.g, i.e, cf, vs, viz, approx, ca",
    before_numbers="no, nr, n°, nº, n.º, n.o, art, fig, figs, vol, vols, p, pp, ch, chap, "
    "sec, tel, ref, op, cit, ed, eds",
    may_end="a.m, p.m, etc",
)

_MONTHS_EN = "jan, feb, mar, apr, jun, jul, aug, sep, sept, oct, nov, dec"
_DAYS_EN = "mon, tue, tues, wed, thu, thur, thurs, fri, sat, sun"
_MONTHS_ROMANCE = "ene, gen, janv, fév, févr, fevr, mar, abr, avr, mai, giu, juin, juil, "
_MONTHS_ROMANCE += "lug, ago, agosto, sept, set, ott, out, nov, dic, dez, déc"

TABLES: dict[str, Table] = {
    "en": Table(
        starters="i, it, its, did, do, does, is, was, are, he, she, they, we, you, the, "
        "this, that, these, those, there, then, how, "
        "what, when, where, why, who, but, and, so, yet, however, in, on, at, a, an, my, our, "
        "his, her, their, if, as, after, before, now, today",
        titles="messrs, mmes, jr, sr, rev, hon, gen, gov, sen, rep, reps, pres, capt, cmdr, "
        "col, lt, maj, sgt, cpl, pvt, adm, brig, insp, supt, det, fr, mt, ft, esq, msgr",
        abbreviations="inc, ltd, co, corp, bros, dept, univ, assn, ave, blvd, rd, hwy, "
        "govt, intl, natl, mfg, misc, ext, u.s, u.k, e.u, u.n",
        before_numbers=f"{_MONTHS_EN}, {_DAYS_EN}, nos, ex, pg, pgs, para, cl, sch, app",
        # times, eras and degrees: after a name or a number they close the phrase
        may_end="a.d, b.c, b.c.e, c.e, ph.d, ll.b, ll.m, j.d, m.d, m.a, b.a, m.sc, b.sc, m.b.a",
        openers="at, on, in, around, about, by, since, until, till, from, after, before, "
        "during, circa, toward, towards, between, near",
    ),
    "fr": Table(
        starters="je, il, elle, ils, elles, nous, vous, on, le, la, les, un, une, ce, cette, ces, "
        "puis, ensuite, mais, et, alors, donc, il y a, comment, quand, où, pourquoi",
        titles="m, mm, mme, mmes, mlle, mlles, me, mgr, pr, dr, st, ste, sts",
        abbreviations="cf, p.ex, c.-à-d, c.à.d, av, bd, boul, apr, ex, éd, coll, "
        "hab, qqch, qqn, vol, cie, sté, dép, ms, ltd",
        before_numbers=f"{_MONTHS_ROMANCE}, janv, févr, avr, juil, oct, lun, mer, jeu, ven, "
        "sam, dim, chap, éq, pl, n.d.l.r, t",
        openers="à, vers, en, dès, depuis, avant, après, jusqu, sous, pendant",
    ),
    "es": Table(
        starters="yo, él, ella, ellos, ellas, nosotros, usted, ustedes, el, la, los, las, un, una, "
        "este, esta, esto, luego, después, pero, y, entonces, así, cómo, cuándo, dónde, hay",
        titles="sr, sra, srta, sres, sras, srtas, dra, dres, dras, d, dña, lic, lcdo, lcda, "
        "ldo, lda, ing, arq, prof, profa, mtro, mtra, excmo, excma, ilmo, ilma, sto, sta, "
        "fr, pbro, gral, cnel, tte, cap, sgto",
        abbreviations="ud, uds, vd, vds, av, avda, c, cía, hnos, dpto, depto, admón, apdo, "
        "p.ej, ej, aprox, etc, sig, sigs, izq, dcha, ee.uu, s.a, s.l, atte, att",
        before_numbers=f"{_MONTHS_ROMANCE}, feb, abr, may, jun, jul, oct, lun, mar, mié, "
        "mier, jue, vie, sáb, dom, núm, nro, pág, págs, cap, tomo, vol",
        may_end="a.c, d.c",  # antes / después de Cristo
        openers="a, en, hacia, desde, hasta, antes, tras, durante, sobre",
    ),
    "pt": Table(
        starters="eu, ele, ela, eles, elas, nós, você, vocês, o, a, os, as, um, uma, este, esta, "
        "isto, "
        "depois, então, mas, e, assim, como, quando, onde, há",
        titles="sr, sra, srta, srs, sras, dr, dra, drs, dras, prof, profa, profs, eng, enga, "
        "arq, exmo, exma, ilmo, ilma, d, pe, gen, cel, cap, ten, sgt, st, sta, sto",
        abbreviations="v.exa, v.sa, av, r, lda, ltda, cia, dept, depto, aprox, ex, obs, "
        "p.ex, etc, séc, e.u.a, s.a",
        before_numbers=f"{_MONTHS_ROMANCE}, fev, abr, mai, jun, jul, out, seg, ter, qua, "
        "qui, sex, sáb, dom, pág, págs, cap, núm, tel",
        may_end="a.c, d.c",
        openers="às, em, no, na, desde, até, antes, após, durante, por",
    ),
    "it": Table(
        starters="io, lui, lei, noi, voi, loro, il, lo, la, i, gli, le, un, una, uno, questo, "
        "questa, "
        "poi, dopo, ma, e, allora, quindi, così, come, quando, dove, ci",
        titles="sig, sigg, sig.ra, sig.na, sig.ri, dott, dott.ssa, dr, dr.ssa, prof, "
        "prof.ssa, avv, ing, arch, geom, rag, on, sen, gen, col, magg, cap, ten, mons, "
        "don, fra, s, ss, sant, sta, egr, gent, gent.mo, gent.ma, spett, ill, ill.mo, "
        "v.cte, dir, amm, pres, cav, comm",
        abbreviations="ad es, es, ecc, cfr, pag, pagg, ca, c.a, p.es, ved, v, sez, art, "
        "tel, fax, dott, st, d, meteor, idraul, psicol, econ, az, s.p.a, s.r.l, p.za, "
        "v.le, c.so, f.p",
        before_numbers=f"{_MONTHS_ROMANCE}, genn, febbr, apr, magg, giu, lugl, sett, "
        "lun, mar, mer, gio, ven, sab, dom, n, cap, pag",
        may_end="a.c, d.c",  # avanti / dopo Cristo
        openers="a, alle, alla, verso, nel, nella, dal, dalla, dopo, prima, fino, durante",
    ),
    "nl": Table(
        starters="ik, hij, zij, ze, wij, we, jij, je, u, het, de, een, dit, dat, deze, toen, "
        "daarna, "
        "dan, maar, en, dus, hoe, wanneer, waar, er",
        titles="dhr, mevr, mw, mej, dr, drs, ir, ing, mr, prof, ds, pr, st, gebr",
        abbreviations="bijv, bv, o.a, e.a, d.w.z, m.a.w, t.a.v, t.o.v, i.p.v, i.v.m, "
        "m.b.t, n.a.v, z.s.m, o.b.v, resp, evt, incl, excl, ca, enz, etc, vgl, jl, "
        "aanw, vnw, zn, bn, ww, bijw, lidw, vz, vw, tel",
        before_numbers="jan, febr, feb, mrt, apr, jun, jul, aug, sep, sept, okt, nov, dec, "
        "ma, di, wo, do, vr, za, zo, nr, blz, art, hfst, afb, fig",
        openers="om, rond, in, op, sinds, na, voor, tot, tijdens, vanaf",
    ),
    "de": Table(
        starters="ich, er, sie, es, wir, ihr, der, die, das, ein, eine, dies, diese, dieser, dann, "
        "danach, aber, und, also, so, wie, wann, wo, warum, man, heute",
        titles="hr, hrn, fr, frl, dr, prof, dipl, dipl.-ing, ing, mag, st, sr, pfr, "
        "dr med, dr phil, dr jur, dr rer, dr rer nat",
        abbreviations="z.b, u.a, d.h, bzw, vgl, evtl, ggf, inkl, exkl, sog, usw, u.ä, o.ä, "
        "u.u, z.t, z.z, z.zt, zzt, i.d.r, i.a, u.s.w, ca, med, phil, jur, rer, nat, "
        "kath, ev, evang, röm, dt, engl, frz, ital, allg, bes, bspw, insb, einschl, "
        "zzgl, abzgl, eigtl, geb, gest, verh, gegr, jh, jhd, jhdt, mio, mrd, tsd, "
        "str, pl, abt, ggü, bzgl, lt, rd, v.a, o.g, s.o, s.u",
        before_numbers="jan, feb, febr, mär, apr, jun, jul, aug, sep, sept, okt, nov, dez, "
        "mo, di, mi, do, fr, sa, so, s, nr, abs, abb, kap, bd, tab, anm, tel, str",
        openers="um, gegen, am, im, seit, ab, bis, nach, vor, während",
        ordinal_words="januar, jänner, februar, märz, april, mai, juni, juli, august, "
        "september, oktober, november, dezember, jan, feb, febr, mär, apr, jun, jul, "
        "aug, sep, sept, okt, nov, dez, jahrhundert, jahrhunderts, jh, jhd, jhdt, "
        "jahrtausend, klasse, liga, platz, stock, etage, mal, auflage, ausgabe, "
        "kapitel, runde, tag, woche, advent, bundesliga, weltkrieg, weltkriegs",
    ),
    "hi": Table(
        titles="डॉ, श्री, श्रीमती, सुश्री, कु, प्रो, स्व, सं",
        abbreviations="ई, पू, उदा",
        before_numbers="क्र, पृ, सं",
    ),
    "ar": Table(
        titles="د, أ, م, ش, ص",
        abbreviations="إلخ, اهـ, ق.م, ب.م",
        before_numbers="ص, ج, ع, رقم",
    ),
    # Other languages espeak-ng speaks well.
    "ca": Table(
        titles="sr, sra, srta, dr, dra, prof, profa, mn, st, sta, mossèn",
        abbreviations="p.ex, etc, av, pl, c, núm, aprox",
        before_numbers="gen, febr, març, abr, maig, jun, jul, ag, set, oct, nov, des, pàg, "
        "cap, núm",
    ),
    "da": Table(
        titles="hr, fr, frk, dr, prof, pastor, st",
        abbreviations="f.eks, bl.a, dvs, osv, mht, mv, pga, ca, evt, inkl, jf, iflg, ifm, "
        "vedr, ang, hhv, m.fl, o.l, gl",
        before_numbers="jan, feb, mar, apr, jun, jul, aug, sep, sept, okt, nov, dec, nr, "
        "s, kap, stk, tlf",
        ordinal_words="januar, februar, marts, april, maj, juni, juli, august, september, "
        "oktober, november, december, jan, feb, mar, apr, jun, jul, aug, sep, okt, nov, "
        "dec, klasse, sal, plads, gang, udgave",
    ),
    "sv": Table(
        titles="hr, fr, fru, dr, prof, doc, st",
        abbreviations="t.ex, bl.a, d.v.s, dvs, o.s.v, osv, m.m, mm, ca, resp, inkl, exkl, "
        "jfr, fr.o.m, t.o.m, s.k, p.g.a, pga",
        before_numbers="jan, febr, feb, mars, apr, jun, jul, aug, sep, sept, okt, nov, dec, "
        "nr, s, kap, tel",
    ),
    "nb": Table(
        titles="hr, fr, frk, dr, prof, st",
        abbreviations="f.eks, bl.a, dvs, osv, mht, m.m, mm, ca, ev, inkl, jf, iflg, ifm, "
        "vedr, pga, o.l",
        before_numbers="jan, feb, mar, apr, jun, jul, aug, sep, sept, okt, nov, des, nr, "
        "s, kap, tlf",
        ordinal_words="januar, februar, mars, april, mai, juni, juli, august, september, "
        "oktober, november, desember, jan, feb, mar, apr, jun, jul, aug, sep, okt, nov, "
        "des, klasse, etasje, plass, gang, utgave",
    ),
    "fi": Table(
        titles="hra, rva, nti, tri, prof, maist",
        abbreviations="esim, ns, mm, ym, yms, jne, ts, vrt, ks, n, noin, tms, eli",
        before_numbers="tammik, helmik, maalisk, huhtik, toukok, kesäk, heinäk, elok, "
        "syysk, lokak, marrask, jouluk, nro, s, sivu, puh",
        ordinal_words="tammikuuta, helmikuuta, maaliskuuta, huhtikuuta, toukokuuta, "
        "kesäkuuta, heinäkuuta, elokuuta, syyskuuta, lokakuuta, marraskuuta, "
        "joulukuuta, päivä, päivänä, kerros, kerroksessa, luokka, luokalla",
    ),
    "pl": Table(
        titles="p, dr, prof, inż, mgr, ks, hab, płk, gen, kpt, mjr, por, św",
        abbreviations="np, tzn, tj, itd, itp, m.in, ok, wg, ul, al, pl, os, godz, tzw, "
        "jw, r, w, ww, zob, por, gr, tys, mln, mld",
        before_numbers="stycz, lut, mar, kwiec, kw, maj, czerw, lip, sierp, wrz, paźdz, "
        "paź, listop, lis, grudz, gru, nr, s, str, rozdz, tel",
        ordinal_words="stycznia, lutego, marca, kwietnia, maja, czerwca, lipca, sierpnia, "
        "września, października, listopada, grudnia, klasa, klasy, piętro, piętrze, "
        "miejsce, wiek, wieku, rocznica",
    ),
    "cs": Table(
        titles="p, pí, sl, dr, mudr, judr, phdr, ing, mgr, bc, doc, prof, sv",
        abbreviations="např, tj, tzv, atd, apod, resp, popř, mj, cca, zejm, vč, tzn, "
        "ul, nám, tel, tis, mil, mld, r, st, str",
        before_numbers="led, ún, břez, dub, květ, čer, červ, srp, zář, říj, list, pros, "
        "č, s, str, kap, tel",
        ordinal_words="ledna, února, března, dubna, května, června, července, srpna, "
        "září, října, listopadu, prosince, třída, třídy, patro, patře, místo, století, "
        "ročník",
    ),
    "ru": Table(
        titles="г, гг, г-н, г-жа, тов, проф, акад, доц, св, ул, им",
        abbreviations="т.е, т.д, т.п, т.к, т.н, т.о, др, пр, см, ср, напр, прим, стр, "
        "руб, коп, тыс, млн, млрд, ок, гл, д, кв, обл, р-н, пос, с",
        before_numbers="янв, фев, февр, мар, апр, июн, июл, авг, сен, сент, окт, ноя, "
        "нояб, дек, №, ст, стр, гл, п, пп, т, тт, рис, табл",
    ),
    "tr": Table(
        titles="dr, prof, doç, av, sn, bay, bayan, yrd, op, uzm, müh",
        abbreviations="vb, vs, örn, yy, bkz, krş, sf, age, agy, mah, cad, sok, apt, "
        "ltd, şti, a.ş, tel",
        before_numbers="oca, şub, mar, nis, may, haz, tem, ağu, eyl, eki, kas, ara, no, "
        "s, sy, bölüm",
        ordinal_words="yüzyıl, yüzyılda, sınıf, kat, sırada, yıl, yılında, madde",
    ),
    "ro": Table(
        titles="dl, dna, dra, d-l, d-na, dr, prof, conf, ing, st",
        abbreviations="ex, etc, ș.a, ș.a.m.d, adică, aprox, nr, str, bd, cca, pag",
        before_numbers="ian, feb, mar, apr, iun, iul, aug, sept, oct, nov, dec, nr, pag, cap, tel",
    ),
    "el": Table(
        titles="κ, κα, κκ, δρ, καθ, αγ",
        abbreviations="π.χ, δηλ, κλπ, κτλ, βλ, σελ, αρ, τηλ, οδ, λεωφ",
        before_numbers="ιαν, φεβ, μαρ, απρ, ιουν, ιουλ, αυγ, σεπ, οκτ, νοε, δεκ, αρ, σελ, κεφ",
    ),
}
