#!/usr/bin/env python3
"""Tests of model/ that need no PyTorch (numpy + stdlib):

    python3 -m unittest discover -s model -p 'test_*.py' -v

MODEL_TEST_CLI=1 also runs the project's CLI (`npm run -s cli -- accuracy --adapter swiftshader`) on a
tiny KV file written by the same code as train.py. The committed run (model/run, weights included) is
checked against the numpy forward pass; MODEL_TEST_RUN=DIR checks another run folder (the --out of
train.py) instead.
"""
import gzip
import hashlib
import json
import os
import re
import struct
import subprocess
import sys
import tempfile
import unittest

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

import make_corpus  # noqa: E402
import stfile  # noqa: E402
import tokenizer as tokmod  # noqa: E402
import train  # noqa: E402
import train_tokenizer  # noqa: E402


def parse_plain(data):
    """An independent safetensors parse (struct + json): (header dict, data region start)."""
    (n,) = struct.unpack('<Q', data[:8])
    return json.loads(data[8:8 + n].decode('utf-8')), 8 + n


class SafetensorsWriter(unittest.TestCase):
    def test_layout_offsets_and_values(self):
        a = np.arange(6, dtype=np.float32).reshape(2, 3)
        b = np.array([1.5, -2.0, 65504.0], dtype=np.float16)
        c = np.array([7, -8], dtype=np.int32)
        data = stfile.encode([('a', a), ('b', b), ('c', c)], {'layout': 't_hkv_d'})
        header, start = parse_plain(data)
        self.assertEqual(start % 8, 0, 'data region 8-byte aligned')
        self.assertEqual(header['__metadata__'], {'layout': 't_hkv_d'})
        self.assertEqual(list(k for k in header if k != '__metadata__'), ['a', 'b', 'c'])
        self.assertEqual(header['a'], {'dtype': 'F32', 'shape': [2, 3], 'data_offsets': [0, 24]})
        self.assertEqual(header['b'], {'dtype': 'F16', 'shape': [3], 'data_offsets': [24, 30]})
        self.assertEqual(header['c'], {'dtype': 'I32', 'shape': [2], 'data_offsets': [30, 38]})
        self.assertEqual(len(data), start + 38, 'no bytes after the last tensor')
        self.assertEqual(list(struct.unpack('<6f', data[start:start + 24])), list(range(6)))
        self.assertEqual(struct.unpack('<3e', data[start + 24:start + 30]), (1.5, -2.0, 65504.0))
        self.assertEqual(struct.unpack('<2i', data[start + 30:start + 38]), (7, -8))
        # the header text is JSON padded with spaces only
        (n,) = struct.unpack('<Q', data[:8])
        self.assertTrue(re.fullmatch(rb'\{.*\} *', data[8:8 + n], re.S))
        tensors, meta = stfile.decode(data)
        np.testing.assert_array_equal(tensors['a'], a)
        np.testing.assert_array_equal(tensors['b'], b)
        np.testing.assert_array_equal(tensors['c'], c)

    def test_big_endian_and_noncontiguous_input(self):
        x = np.arange(12, dtype='>f4').reshape(3, 4).T  # big-endian, transposed view
        tensors, _ = stfile.decode(stfile.encode({'x': x}))
        np.testing.assert_array_equal(tensors['x'], x)
        self.assertEqual(tensors['x'].dtype.str, '<f4')

    def test_decode_refuses_gaps(self):
        data = bytearray(stfile.encode({'a': np.zeros(2, np.float32)}))
        self.assertRaises(ValueError, stfile.decode, bytes(data) + b'\0\0\0\0')
        with self.assertRaises(ValueError):
            stfile.encode([('a', np.zeros(1, np.float32)), ('a', np.zeros(1, np.float32))])

    def test_kv_layer_file(self):
        rng = np.random.default_rng(0)
        k = rng.standard_normal((6, 1, 128)).astype(np.float32)
        v = rng.standard_normal((6, 1, 128)).astype(np.float32)
        q = rng.standard_normal((2, 4, 128)).astype(np.float32)
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, 'kv.safetensors')
            stfile.write_kv_layer(path, k, v, q, [3, 3], {'layer': '0'})
            with open(path, 'rb') as f:
                header, _ = parse_plain(f.read())
            self.assertEqual(header['k']['dtype'], 'F32')
            self.assertEqual(header['k']['shape'], [6, 1, 128])
            self.assertEqual(header['q']['shape'], [2, 4, 128])
            self.assertEqual(header['context_lens'], {'dtype': 'I32', 'shape': [2], 'data_offsets': header['context_lens']['data_offsets']})
            self.assertEqual(header['__metadata__']['layout'], 't_hkv_d')
            tensors, _ = stfile.read(path)
            np.testing.assert_array_equal(tensors['k'], k)
            self.assertEqual(tensors['context_lens'].tolist(), [3, 3])
            self.assertRaises(ValueError, stfile.write_kv_layer, path, k, v, q, [3, 2])
            self.assertRaises(ValueError, stfile.write_kv_layer, path, k * 1e5, v, q, [3, 3])

    @unittest.skipUnless(os.environ.get('MODEL_TEST_CLI') == '1', 'set MODEL_TEST_CLI=1 to run the project CLI on a tiny KV file')
    def test_project_cli_reads_kv_file(self):
        rng = np.random.default_rng(1)
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, 'kv-layer0.safetensors')
            stfile.write_kv_layer(path, rng.standard_normal((6, 1, 128)), rng.standard_normal((6, 1, 128)),
                                  rng.standard_normal((2, 4, 128)), [3, 3])
            r = subprocess.run(['npm', 'run', '-s', 'cli', '--', 'accuracy', '--file', path, '--methods', 'paper',
                                '--adapter', 'swiftshader'], cwd=ROOT, capture_output=True, text=True, timeout=600)
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            self.assertIn('2 seq (lens 3, 3; 6 tokens), Hq=4, Hkv=1, D=128, F32, q from the file', r.stdout + r.stderr)


class Tokenizer(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tok = tokmod.load()

    def test_round_trip_heldout(self):
        with gzip.open(train.CORPUS['heldout'], 'rb') as f:
            text = f.read().decode('utf-8')
        ids = self.tok.encode(text)
        self.assertEqual(self.tok.decode(ids), text)
        self.assertTrue(all(0 <= i < 4094 for i in ids))
        self.assertLess(len(ids), len(text.encode('utf-8')) / 2.5, 'compresses the held-out text')

    def test_round_trip_odd_text(self):
        for text in ['', ' ', '\n\n\n', '  leading', 'trailing   ', "it's they'll", 'caf\u00e9 \u6771\u4eac \U0001F600',
                     '\t\tx = 1;\r\n', '123456789', '\x00\x1f\x7f', 'my $x = $y <=> $z; # comment']:
            self.assertEqual(self.tok.decode(self.tok.encode(text)), text)

    def test_specials_and_vocab(self):
        self.assertEqual(self.tok.vocab_size, 4096)
        self.assertEqual(self.tok.specials, {'<bos>': 4094, '<eos>': 4095})
        self.assertEqual(len(self.tok.merges), 4096 - 256 - 2)
        self.assertEqual(self.tok.decode([4094, 72, 105, 4095]), 'Hi')

    def test_pretokenize_covers_text(self):
        text = "Hello,  world!\n\n    my @a = (1..10);\t# x\u00a0y caf\u00e9's"
        self.assertEqual(''.join(tokmod.pretokenize(text)), text)

    def test_training_is_deterministic(self):
        with tempfile.TemporaryDirectory() as d:
            out = os.path.join(d, 'tokenizer.json')
            train_tokenizer.main(['--out', out])
            with open(out, 'rb') as a, open(tokmod.DEFAULT_PATH, 'rb') as b:
                self.assertEqual(a.read(), b.read(), 'retraining gives the committed tokenizer.json')


class Corpus(unittest.TestCase):
    def test_pod_to_text(self):
        pod = ('=head1 NAME\n\nfoo - does I<things> with B<C<< $a <=> $b >>>\n\n=over 4\n\n=item *\n\n'
               'See L<perlop/"Operators">, L<the docs|perlfunc> and L<https://perl.org>. E<lt>tagE<gt> X<index>\n\n'
               '=back\n\n    my $x = 1;\n    print "B<not code>";\n\n=for comment hidden\n\n=begin comment\n\nhidden too\n\n'
               '=end comment\n\n=cut\n\nnot pod\n\n=pod\n\nback in pod\n')
        self.assertEqual(make_corpus.pod_to_text(pod),
                         'NAME\n\nfoo - does things with $a <=> $b\n\n*\n\n'
                         'See "Operators" in perlop, the docs and https://perl.org. <tag> \n\n'
                         '    my $x = 1;\n    print "B<not code>";\n\nback in pod\n')

    def test_extract_pod(self):
        pm = ('package Foo;\nuse strict;\n\n=head1 NAME\n\nFoo - a module\n\n=cut\n\nsub foo { 1 }\n'
              '\nmy $x =\n  2;\n=pod\n\nMore B<pod>.\n\n=cutting edge is still pod\n\n=cut\n\n1;\n__END__\n\n'
              '=head2 After END\n\nTo the end of the file\n')
        pod = make_corpus.extract_pod(pm)
        self.assertNotIn('sub foo', pod)
        self.assertNotIn('use strict', pod)
        self.assertNotIn('__END__', pod)
        self.assertIn('\n=cutting edge is still pod\n', pod)  # only the line `=cut` ends a block
        self.assertEqual(make_corpus.pod_to_text(pod),
                         'NAME\n\nFoo - a module\n\nMore pod.\n\nAfter END\n\nTo the end of the file\n')
        self.assertEqual(make_corpus.extract_pod('no pod here\n'), '')

    def test_dep5_last_stanza_governs(self):
        text = ('Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\n'
                'Files: *\nCopyright:\n Larry Wall\n .\n and others\nLicense: GPL-1+ or Artistic\nComment:\n x\n\n'
                'Files: cpan/Text-Tabs/*\nCopyright: David Muir Sharnoff\nLicense: TEXT-TABS\n\n'
                'Files:\n cpan/Foo/*\n dist/Ba?/lib/*.pm\nCopyright: unknown\nLicense: GPL-2+ or Artistic\n\n'
                'Files: cpan/Foo/lib/Foo/Free.pm\nCopyright: me\nLicense: GPL-1+ or Artistic\n\n'
                'License: TEXT-TABS\n the licence text\n')
        st = make_corpus.parse_dep5(text)
        self.assertEqual([s['license'] for s in st], ['GPL-1+ or Artistic', 'TEXT-TABS', 'GPL-2+ or Artistic',
                                                      'GPL-1+ or Artistic'])
        self.assertEqual(st[0]['copyright'], 'Larry Wall; and others')
        self.assertEqual(st[2]['files'], ['cpan/Foo/*', 'dist/Ba?/lib/*.pm'])
        gov = lambda path: make_corpus.governing_stanza(st, path)
        self.assertEqual(gov('lib/strict.pm'), (0, '*'))
        self.assertEqual(gov('cpan/Text-Tabs/lib/Text/Wrap.pm'), (1, 'cpan/Text-Tabs/*'))
        self.assertEqual(gov('cpan/Foo/lib/Foo.pm'), (2, 'cpan/Foo/*'))
        self.assertEqual(gov('dist/Bar/lib/A/B.pm'), (2, 'dist/Ba?/lib/*.pm'))  # * spans slashes
        self.assertEqual(gov('dist/Barr/lib/B.pm'), (0, '*'))  # ? is one character
        self.assertEqual(gov('cpan/Foo/lib/Foo/Free.pm'), (3, 'cpan/Foo/lib/Foo/Free.pm'))  # the last match wins
        self.assertEqual(gov('xcpan/Foo/lib/Foo.pm'), (0, '*'))  # the whole path must match

    def test_module_sources_map(self):
        table = make_corpus.read_module_sources()
        self.assertGreater(len(table), 500)
        self.assertTrue(all(how in ('same', 'patched', 'built') for _, how in table.values()))
        self.assertEqual(table['Getopt/Long.pm'], ('cpan/Getopt-Long/lib/Getopt/Long.pm', 'same'))
        self.assertEqual(table['pod/perldiag.pod'][0], 'pod/perldiag.pod')

    def test_corpus_licences(self):
        """Every module file in the corpus is governed by a GPL-1+ or Artistic stanza; the perl-doc split is
        the one of the perl-doc-only corpus (its held-out files come first in the held-out text)."""
        with open(os.path.join(HERE, 'corpus', 'SOURCES.md'), encoding='utf-8') as f:
            sources = f.read()
        rows = re.findall(r'^\| (\S+) \| (\S+) \| `([^`]+)` \| \d+ \| [0-9a-f]{64} \| \d+ \|$', sources, re.M)
        self.assertGreater(len(rows), 400)
        table = make_corpus.read_module_sources()
        for rel, src, pat in rows:
            self.assertEqual(table[rel][0], src)
            self.assertTrue(make_corpus.dep5_pattern(pat).match(src), rel)
        for name in ('Getopt/Long.pm', 'Tie/File.pm', 'Text/Wrap.pm', 'Pod/Html.pm', 'ok.pm'):
            self.assertNotIn(name, [r[0] for r in rows])
        heldout = re.search(r'^## Files in heldout.*?\n\n### perl-doc.*?\n\n(.*?)\n\n', sources, re.M | re.S).group(1)
        self.assertEqual(re.findall(r'^\| (perl\S*\.pod) \|', heldout, re.M),
                         ['perl.pod', 'perl5180delta.pod', 'perl5262delta.pod', 'perl584delta.pod', 'perlcygwin.pod',
                          'perlfaq5.pod', 'perlhurd.pod', 'perlootut.pod', 'perlref.pod', 'perltooc.pod'])

    def test_files_match_sources(self):
        with open(os.path.join(HERE, 'corpus', 'SOURCES.md'), encoding='utf-8') as f:
            sources = f.read()
        for split in ('train', 'heldout'):
            with open(train.CORPUS[split], 'rb') as f:
                gz = f.read()
            self.assertEqual(gz[:3], b'\x1f\x8b\x08')
            self.assertEqual(gz[4:8], b'\0\0\0\0', 'gzip mtime 0')
            text = gzip.decompress(gz)
            row = re.search(r'^\| %s \| (\d+) \| (\d+) \| (\d+) \| ([0-9a-f]{64}) \|$' % split, sources, re.M)
            self.assertIsNotNone(row, split)
            self.assertEqual(int(row.group(2)), len(text))
            self.assertEqual(int(row.group(3)), len(gz))
            self.assertEqual(row.group(4), hashlib.sha256(text).hexdigest())
            self.assertEqual(text.decode('utf-8').count('\x0c') + 1, int(row.group(1)), 'documents')
        total = sum(os.path.getsize(train.CORPUS[s]) for s in ('train', 'heldout'))
        self.assertLess(total, 4_000_000)

    @unittest.skipUnless(os.environ.get('PERL_DOC_PKG') and os.environ.get('PERL_MODULES_PKG'),
                         'set PERL_DOC_PKG and PERL_MODULES_PKG to the unpacked perl-doc and perl-modules-5.36 '
                         'packages to regenerate')
    def test_regenerates_byte_for_byte(self):
        with tempfile.TemporaryDirectory() as d:
            make_corpus.main([os.environ['PERL_DOC_PKG'], '--modules', os.environ['PERL_MODULES_PKG'], '--out', d])
            for name in ('train.txt.gz', 'heldout.txt.gz', 'SOURCES.md'):
                with open(os.path.join(d, name), 'rb') as a, open(os.path.join(HERE, 'corpus', name), 'rb') as b:
                    self.assertEqual(a.read(), b.read(), name)


class TrainScriptWithoutTorch(unittest.TestCase):
    def test_check_only(self):
        cfg = train.load_config()
        s = train.check(cfg, verbose=False)
        self.assertEqual(s['params'], 8_260_992)
        self.assertLessEqual(s['f16_weight_bytes'], 40_000_000)
        self.assertLessEqual(len(s['outputs']), 8)
        self.assertTrue(all(b <= cfg['outputs']['max_file_bytes'] for _, b in s['outputs']))
        r = subprocess.run([sys.executable, os.path.join(HERE, 'train.py'), '--check-only'], capture_output=True, text=True,
                           cwd=tempfile.gettempdir(), timeout=300)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn('check-only: ok', r.stdout)
        self.assertNotIn('torch', sys.modules)

    def test_shard_plan_matches_writer(self):
        """The shards train.py writes have exactly the planned sizes (zeros as weights)."""
        cfg = train.load_config()
        m = cfg['model']
        shapes = dict(train.weight_shapes(m))
        shards = train.shard_plan(m, cfg['outputs']['max_file_bytes'])
        plan = dict(train.output_plan(cfg))
        self.assertEqual(sum(len(s) for s in shards), len(shapes))
        with tempfile.TemporaryDirectory() as d:
            for fname, names in zip(train.shard_names(len(shards)), shards):
                path = os.path.join(d, fname)
                size = stfile.write(path, [(n, np.zeros(shapes[n], np.float16)) for n in names], {'format': 'pt'})
                self.assertEqual(size, plan[fname])
                self.assertLessEqual(size, cfg['outputs']['max_file_bytes'])
                tensors, _ = stfile.read(path)
                self.assertEqual(list(tensors), names)

    def test_schedule(self):
        t = train.load_config()['train']
        self.assertAlmostEqual(train.lr_at(t, 0, 0.0), t['peak_lr'] / t['warmup_steps'])
        self.assertAlmostEqual(train.lr_at(t, t['warmup_steps'], 0.0), t['peak_lr'])
        self.assertAlmostEqual(train.lr_at(t, 10 ** 6, 1.0), t['min_lr'])
        self.assertEqual(train.eval_windows(10, 4), [(0, 4), (4, 4), (8, 1)])

    def test_run_matches_numpy_forward(self):
        # the committed run (weights included) unless MODEL_TEST_RUN names another train.py --out folder
        import forward_numpy
        forward_numpy.verify(os.environ.get('MODEL_TEST_RUN') or os.path.join(HERE, 'run'))

    def test_kv_ablation_one_window(self):
        # the K/V ablation tool on the committed run's first window: quantizing either half costs perplexity,
        # the rotation of K reduces K's share, and V's storage is independent of what is done to K
        import forward_numpy
        import kv_ablation
        ref = json.load(open(os.path.join(HERE, 'run', 'reference.json'), encoding='utf-8'))
        w = forward_numpy.load_weights(os.path.join(HERE, 'run'), ref['weights']['files'])
        stream = train.token_stream(tokmod.load(), train.read_docs('heldout')[1])
        windows = train.eval_windows(len(stream), ref['heldout']['window_tokens'])[:1]
        ppl = {name: kv_ablation.perplexity(w, ref['config'], stream, windows, *kv_ablation.VARIANTS[name])[0]
               for name in ('fp16', 'K int4, V fp16', 'K int4-hadamard B=128, V fp16', 'K fp16, V int4', 'int4')}
        self.assertTrue(all(np.isfinite(list(ppl.values()))))
        for name in ('K int4, V fp16', 'K fp16, V int4', 'int4'):
            self.assertGreater(ppl[name], ppl['fp16'], name)
        self.assertLess(ppl['K int4-hadamard B=128, V fp16'], ppl['K int4, V fp16'])
        rows = np.random.default_rng(1).normal(size=(1, 5, 128))
        self.assertLess(np.max(np.abs(kv_ablation.int4(128)(rows) - rows)), 0.5)  # rotated back

    def test_kv_ablation_layers_key_stats_and_centring(self):
        # one layer's variant touches that layer only; the key statistics are those of a ~10 % INT4 error
        # whose logit noise is far below the logits' spread; a common offset in the keys costs token-wise
        # INT4 accuracy, which centring takes back (the mean keys come from the train split)
        import forward_numpy
        import kv_ablation
        x = np.random.default_rng(2).normal(size=(1, 6, 128))
        store = kv_ablation.in_layer(kv_ablation.int4(128), 2)
        np.testing.assert_array_equal(store(x, 1), kv_ablation.fp16(x))
        np.testing.assert_array_equal(store(x, 2), kv_ablation.int4(128)(x))
        ref = json.load(open(os.path.join(HERE, 'run', 'reference.json'), encoding='utf-8'))
        c = ref['config']
        w = forward_numpy.load_weights(os.path.join(HERE, 'run'), ref['weights']['files'])
        stream = train.token_stream(tokmod.load(), train.read_docs('heldout')[1])
        windows = train.eval_windows(len(stream), ref['heldout']['window_tokens'])[:1]
        stats = kv_ablation.key_stats(w, c, stream, windows)
        self.assertEqual(sorted(stats), list(range(c['n_layers'])))
        for layer, st in stats.items():
            self.assertTrue(0.05 < st['keyError'] < 0.15, (layer, st))
            self.assertLess(st['keyErrorCentred'], st['keyError'])
            self.assertLess(st['logitNoise'], 0.2 * st['logitSpread'])
            self.assertTrue(0.0 < st['meanKey'] < 1.0)
        mu = kv_ablation.mean_keys(w, c, tokmod.load(), windows=1)
        self.assertEqual(sorted(mu), list(range(c['n_layers'])))
        self.assertEqual(mu[0].shape, (c['n_kv_heads'], 1, c['head_dim']))
        offset = x + 4.0 * np.random.default_rng(3).normal(size=(1, 1, 128))
        k_store, v_store = kv_ablation.centred_stores({0: offset.mean(axis=1, keepdims=True)})
        self.assertLess(np.linalg.norm(k_store(offset, 0) - offset), 0.5 * np.linalg.norm(kv_ablation.int4(128)(offset) - offset))
        np.testing.assert_array_equal(v_store(offset, 0), kv_ablation.int4()(offset))  # V as the method stores it

    def test_kv_ablation_variant_list(self):
        # names that hold a comma are found whole, beside ones that do not; an unknown piece is named
        import kv_ablation
        self.assertEqual(kv_ablation.parse_variants('fp16,K int4, V fp16,int4'), (['fp16', 'K int4, V fp16', 'int4'], None))
        self.assertEqual(kv_ablation.parse_variants('K fp16, V int4-hadamard B=128'), (['K fp16, V int4-hadamard B=128'], None))
        self.assertEqual(kv_ablation.parse_variants('fp16,nope'), (['fp16'], 'nope'))

    def test_kv_ablation_paired_bootstrap(self):
        # the interval of a perplexity change over resampled windows: none for the same NLLs, exactly the
        # change when every window's mean NLL moves by the same amount, and it holds the observed change
        import kv_ablation
        rng = np.random.default_rng(3)
        counts = rng.integers(100, 513, size=40)
        base = rng.uniform(2.5, 3.5, size=40) * counts
        self.assertEqual(kv_ablation.paired_bootstrap(base, base, counts, 500), (0.0, 0.0))
        lo, hi = kv_ablation.paired_bootstrap(base + 0.01 * counts, base, counts, 500)
        self.assertAlmostEqual(lo, np.exp(0.01) - 1, places=12)
        self.assertAlmostEqual(hi, np.exp(0.01) - 1, places=12)
        noisy = base + counts * rng.normal(0.01, 0.02, size=40)
        lo, hi = kv_ablation.paired_bootstrap(noisy, base, counts, 2000)
        observed = np.exp((noisy.sum() - base.sum()) / counts.sum()) - 1
        self.assertLess(lo, observed)
        self.assertGreater(hi, observed)
        self.assertLess(hi - lo, 0.05)
        # whole groups: a shift common to all is still exact, and grouping windows widens the interval
        # when the change varies by group
        groups = np.arange(40) // 8
        lo, hi = kv_ablation.paired_bootstrap(base + 0.01 * counts, base, counts, 500, groups=groups)
        self.assertAlmostEqual(lo, np.exp(0.01) - 1, places=12)
        self.assertAlmostEqual(hi, np.exp(0.01) - 1, places=12)
        by_group = base + counts * (0.01 + 0.03 * (groups % 2 - 0.5))
        wlo, whi = kv_ablation.paired_bootstrap(by_group, base, counts, 4000)
        glo, ghi = kv_ablation.paired_bootstrap(by_group, base, counts, 4000, groups=groups)
        self.assertGreater(ghi - glo, whi - wlo)
        stream = [7, 1, 2, 7, 3, 4, 5, 7, 6]  # three documents, <bos> = 7
        self.assertEqual(list(kv_ablation.window_documents(stream, [(0, 2), (2, 2), (4, 2), (6, 2)], 7)), [0, 0, 1, 1])


if __name__ == '__main__':
    unittest.main()
