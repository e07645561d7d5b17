using System.Text;
using System.Text.Json;
using Elect.Text;
using Google.Protobuf;
using TorchSharp;
using Xunit;

namespace Elect.Tests;

/// <summary>Golden parity of the CLIP and T5 tokenizers (cases listed in manifest.json), plus unit tests.</summary>
public class TokenizerTests
{
    private static readonly Lazy<ClipTokenizer> Clip = new(() => ClipTokenizer.FromFolder(Path.Combine(Fixtures.Ip2pTiny, "tokenizer")));
    private static readonly Lazy<ClipTokenizer> ClipBang = new(() => ClipTokenizer.FromFolder(Path.Combine(Fixtures.UltraEditTiny, "tokenizer_2")));
    private static readonly Lazy<T5Tokenizer> T5 = new(() => T5Tokenizer.FromFolder(Path.Combine(Fixtures.UltraEditTiny, "tokenizer_3")));

    // ---- golden parity (one test case per manifest string) ----

    /// <summary>Indices of manifest[key].cases; a single -1 when the fixtures are absent (the test then skips).</summary>
    public static IEnumerable<object[]> Cases(string key)
    {
        var cases = Fixtures.Root is null ? null : ManifestCases(key);
        if (cases is null || cases.Count == 0) return [[-1]];
        return Enumerable.Range(0, cases.Count).Select(i => new object[] { i });
    }

    private static List<string>? ManifestCases(string key)
    {
        var path = Path.Combine(Fixtures.Root!, "manifest.json");
        using var doc = JsonDocument.Parse(File.ReadAllBytes(path));
        if (!doc.RootElement.TryGetProperty(key, out var entry) || !entry.TryGetProperty("cases", out var cases)) return null;
        return cases.EnumerateArray().Select(c => c.GetString()!).ToList();
    }

    private static string CaseText(string key, int index)
    {
        Fixtures.Require();
        Assert.True(index >= 0, $"manifest.json has no cases for {key}");
        var cases = ManifestCases(key);
        Assert.NotNull(cases);
        return cases![index];
    }

    private static void AssertGolden(string key, int index, long[] ids)
    {
        var text = CaseText(key, index);
        // compared here rather than with TensorAssert.Equal, whose `equal(...).item<bool>()` is element-wise in
        // TorchSharp and throws for more than one element
        var golden = Fixtures.Golden($"{key}.{index}");
        Assert.Equal(new long[] { ids.Length }, golden.shape);
        Assert.Equal(torch.int64, golden.dtype);
        var expected = golden.data<long>().ToArray();
        Assert.True(expected.SequenceEqual(ids),
            $"{key}.{index} ({JsonSerializer.Serialize(text)}): expected [{string.Join(",", expected)}] got [{string.Join(",", ids)}]");
    }

    [SkippableTheory]
    [MemberData(nameof(Cases), "tokenizer.clip")]
    public void ClipMatchesGolden(int index)
    {
        Fixtures.Require();
        AssertGolden("tokenizer.clip", index, Clip.Value.Encode(CaseText("tokenizer.clip", index)));
    }

    [SkippableTheory]
    [MemberData(nameof(Cases), "tokenizer.clip_pad_bang")]
    public void ClipPadBangMatchesGolden(int index)
    {
        Fixtures.Require();
        AssertGolden("tokenizer.clip_pad_bang", index, ClipBang.Value.Encode(CaseText("tokenizer.clip_pad_bang", index)));
    }

    [SkippableTheory]
    [MemberData(nameof(Cases), "tokenizer.t5")]
    public void T5MatchesGolden(int index)
    {
        Fixtures.Require();
        AssertGolden("tokenizer.t5", index, T5.Value.Encode(CaseText("tokenizer.t5", index), 77));
    }

    [SkippableTheory]
    [InlineData("tokenizer.clip")]
    [InlineData("tokenizer.clip_pad_bang")]
    [InlineData("tokenizer.t5")]
    public void EveryGoldenHasAManifestCase(string key)
    {
        Fixtures.Require();
        var cases = ManifestCases(key);
        Assert.NotNull(cases);
        Assert.NotEmpty(cases!);
        Assert.True(Fixtures.HasGolden($"{key}.{cases!.Count - 1}"), $"golden {key}.{cases.Count - 1} missing");
        Assert.False(Fixtures.HasGolden($"{key}.{cases.Count}"), $"golden {key}.{cases.Count} has no manifest case");
    }

    [SkippableFact]
    public void EncodeBatchStacksRows()
    {
        Fixtures.Require();
        string[] texts = ["Replace the cat with a bear", "", "aaaaa"];
        using var clip = ClipBang.Value.EncodeBatch(texts);
        Assert.Equal(new long[] { 3, 77 }, clip.shape);
        Assert.Equal(torch.int64, clip.dtype);
        for (int b = 0; b < texts.Length; b++)
            Assert.Equal(ClipBang.Value.Encode(texts[b]), clip[b].data<long>().ToArray());
        using var t5 = T5.Value.EncodeBatch(texts);
        Assert.Equal(new long[] { 3, 77 }, t5.shape);
        for (int b = 0; b < texts.Length; b++)
            Assert.Equal(T5.Value.Encode(texts[b]), t5[b].data<long>().ToArray());
    }

    // ---- CLIP behaviour on the real vocabulary ----

    [SkippableFact]
    public void ClipNormalisesNfcHtmlAndSpecialTokens()
    {
        Fixtures.Require();
        var clip = Clip.Value;
        // decomposed accents compose (NFC) before byte-level BPE
        Assert.Equal(clip.Encode("caf\u00e9 na\u00efve"), clip.Encode("cafe\u0301 nai\u0308ve"));
        Assert.NotEqual(clip.Encode("cafe"), clip.Encode("caf\u00e9"));
        // HTML entities stay as they are: transformers 5's CLIPTokenizer (tokenizers backend) has no HTML/ftfy
        // cleaning, unlike OpenAI's original CLIP code (checked against transformers 5.12: "&amp;" -> & amp ;)
        Assert.NotEqual(clip.Encode("& html \"entities\""), clip.Encode("&amp; html &quot;entities&quot;"));
        Assert.Equal(new long[] { clip.BosId, 261, 6259, 282, 6259, 282, clip.EosId }, clip.Encode("&amp;amp;")[..7]);
        // special tokens in the raw text map to their ids; capital sigma lower-cases code point by code point
        // (to U+03C3 even word-finally, as the tokenizers Lowercase normaliser does)
        var ids = clip.Encode("a<|endoftext|>b");
        Assert.Equal(new[] { clip.BosId, 320, clip.EosId, 321, clip.EosId }, ids[..5]);
        Assert.Equal(clip.Encode("\u03bf\u03b4\u03bf\u03c3"), clip.Encode("\u039f\u0394\u039f\u03a3"));
        Assert.NotEqual(clip.Encode("\u03bf\u03b4\u03bf\u03c2"), clip.Encode("\u039f\u0394\u039f\u03a3"));
        // a letter outside the BMP (U+20000) stays in one word with its neighbours; a UTF-16 regex would
        // class its surrogates as punctuation and split "a", U+20000, "b" apart like the spaced form
        Assert.NotEqual(clip.Tokenize("a \U00020000 b"), clip.Tokenize("a\U00020000b"));
        Assert.Equal(new long[] { 3937 }, clip.Tokenize("ab"));
    }

    [SkippableFact]
    public void ClipTruncatesKeepingEos()
    {
        Fixtures.Require();
        var clip = ClipBang.Value;
        Assert.Equal(77, clip.MaxLength);
        Assert.Equal(0, clip.PadId);
        var ids = clip.Encode(string.Join(" ", Enumerable.Repeat("cat", 200)));
        Assert.Equal(clip.BosId, ids[0]);
        Assert.Equal(clip.EosId, ids[76]);
        Assert.All(ids[1..76], id => Assert.Equal(2368, id));
    }

    // ---- T5 behaviour on the real model ----

    [SkippableFact]
    public void T5NormalisesWithTheModelCharsMapAndSplitsSpecials()
    {
        Fixtures.Require();
        var t5 = T5.Value;
        Assert.Equal(1100, t5.VocabSize);
        // nmt_nfkc: full-width forms fold to ASCII (without the charsmap they would be unknown)
        Assert.Equal(t5.Encode("UPPER case"), t5.Encode("\uff35\uff30\uff30\uff25\uff32 case"));
        Assert.DoesNotContain(t5.UnkId, t5.Encode("\uff35\uff30\uff30\uff25\uff32"));
        // sentinels and </s> in the text are special tokens
        Assert.Equal(new long[] { 1099, 11, 1098, 1 }, t5.Encode("<extra_id_0> the<extra_id_1>")[..4]);
        var withEos = t5.Tokenize("a</s>a");
        Assert.Equal(new long[] { 15, 1, 15 }, withEos.ToArray());
        // an unknown run fuses into one <unk>
        var unk = t5.Tokenize("\u2603\u2603");
        Assert.Equal(new long[] { 6, t5.UnkId }, unk.ToArray());
        // truncation keeps </s> last; a short maxLength works too
        var ids = t5.Encode(string.Join(" ", Enumerable.Repeat("the", 100)));
        Assert.Equal(77, ids.Length);
        Assert.All(ids[..76], id => Assert.Equal(11, id));
        Assert.Equal(t5.EosId, ids[76]);
        Assert.Equal(new long[] { 11, 11, 1 }, t5.Encode("the the the the", 3));
    }

    // ---- fixture-free unit tests on tiny hand-made vocabularies ----

    private static string TempDir()
    {
        var dir = Path.Combine(Path.GetTempPath(), "elect-tok-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(dir);
        return dir;
    }

    /// <summary>A tiny CLIP folder: letters a-e and '!' (plain and with &lt;/w&gt;), merges a+b, ab+c&lt;/w&gt;.</summary>
    private static string TinyClipFolder(string? pad = null)
    {
        var dir = TempDir();
        var vocab = new Dictionary<string, int>();
        foreach (var c in "!abcde") vocab[c.ToString()] = vocab.Count;
        foreach (var c in "!abcde") vocab[c + "</w>"] = vocab.Count;
        vocab["ab"] = vocab.Count;
        vocab["abc</w>"] = vocab.Count;
        vocab[ClipTokenizer.StartOfText] = vocab.Count;
        vocab[ClipTokenizer.EndOfText] = vocab.Count;
        File.WriteAllText(Path.Combine(dir, "vocab.json"), JsonSerializer.Serialize(vocab));
        File.WriteAllText(Path.Combine(dir, "merges.txt"), "#version: 0.2\na b\nab c</w>\n");
        if (pad != null)
            File.WriteAllText(Path.Combine(dir, "tokenizer_config.json"), JsonSerializer.Serialize(new Dictionary<string, object>
            {
                ["pad_token"] = new Dictionary<string, object> { ["content"] = pad, ["special"] = true },
                ["model_max_length"] = 8,
            }));
        return dir;
    }

    [Fact]
    public void TinyClipEncodesMergesPadsAndTruncates()
    {
        var dir = TinyClipFolder();
        try
        {
            var clip = ClipTokenizer.FromFolder(dir);
            Assert.Equal(77, clip.MaxLength);
            Assert.Equal(14, clip.BosId);
            Assert.Equal(15, clip.EosId);
            Assert.Equal(15, clip.PadId); // pad defaults to eos
            // "ABC" -> lower -> a b c</w> -> ab c</w> -> abc</w>; "ab" -> a b</w> (no merge "a b</w>"); "!" -> !</w>
            var ids = clip.Encode("  ABC\t ab!  ");
            Assert.Equal(new long[] { 14, 13, 1, 8, 6, 15, 15 }, ids[..7]);
            Assert.Equal(new long[] { 14, 15 }, clip.Encode("")[..2]);
            Assert.All(clip.Encode("")[1..], id => Assert.Equal(15, id));
            var longIds = clip.Encode(string.Concat(Enumerable.Repeat("abc ", 100)));
            Assert.Equal(77, longIds.Length);
            Assert.Equal(14, longIds[0]);
            Assert.All(longIds[1..76], id => Assert.Equal(13, id));
            Assert.Equal(15, longIds[76]);
        }
        finally { Directory.Delete(dir, true); }
    }

    [Fact]
    public void TinyClipReadsPadAndLengthFromConfig()
    {
        var dir = TinyClipFolder(pad: "!");
        try
        {
            var clip = ClipTokenizer.FromFolder(dir);
            Assert.Equal(8, clip.MaxLength);
            Assert.Equal(0, clip.PadId);
            Assert.Equal(new long[] { 14, 13, 15, 0, 0, 0, 0, 0 }, clip.Encode("abc"));
            // the pad token is a special added token: a literal "!" is split out as the pad id before BPE, as
            // transformers does (checked with transformers 5.12 on this folder: "!" -> [14, 0, 15, 0...],
            // "  ABC\t ab!  " -> [14, 13, 1, 8, 0, 15, 0, 0])
            Assert.Equal(new long[] { 14, 0, 15, 0, 0, 0, 0, 0 }, clip.Encode("!"));
            Assert.Equal(new long[] { 14, 13, 1, 8, 0, 15, 0, 0 }, clip.Encode("  ABC\t ab!  "));
            Assert.Equal(new long[] { 14, 13, 13, 13, 13, 13, 13, 15 }, clip.Encode("abc abc abc abc abc abc abc abc abc"));
        }
        finally { Directory.Delete(dir, true); }
    }

    [Fact]
    public void TinyClipSplitsAddedTokensWithTheirFlags()
    {
        // expected ids from transformers 5.12 (CLIPTokenizer.from_pretrained on this very folder)
        var dir = TinyClipFolder();
        try
        {
            static Dictionary<string, object> Tok(string content, bool lstrip = false, bool rstrip = false, bool normalized = false,
                bool singleWord = false, bool special = false) => new()
            {
                ["content"] = content, ["lstrip"] = lstrip, ["rstrip"] = rstrip, ["normalized"] = normalized,
                ["single_word"] = singleWord, ["special"] = special,
            };
            File.WriteAllText(Path.Combine(dir, "tokenizer_config.json"), JsonSerializer.Serialize(new Dictionary<string, object>
            {
                ["pad_token"] = "!",
                ["model_max_length"] = 8,
                ["added_tokens_decoder"] = new Dictionary<string, object>
                {
                    ["16"] = Tok("<m>", lstrip: true, rstrip: true, special: true),
                    ["17"] = Tok("AB", singleWord: true, normalized: true),
                    ["18"] = Tok("cd"),
                },
            }));
            var clip = ClipTokenizer.FromFolder(dir);
            Assert.Equal(new[] { ("!", 0L), ("<m>", 16L), ("AB", 17L), ("cd", 18L) },
                clip.AddedTokens.Where(t => t.Content is "!" or "<m>" or "AB" or "cd").OrderBy(t => t.Id).Select(t => (t.Content, t.Id)));
            long[] Ids(string s) => [clip.BosId, .. clip.Tokenize(s), clip.EosId];
            Assert.Equal(new long[] { 14, 17, 13, 15 }, Ids("ab abc"));          // normalised single word: "abc" is not "ab"
            Assert.Equal(new long[] { 14, 15, 1, 8, 17, 0, 15 }, Ids("xab ab!")); // "xab" is BPE ("x" unknown), "!" the pad
            Assert.Equal(new long[] { 14, 17, 16, 18, 15 }, Ids("AB<m>cd"));
            Assert.Equal(new long[] { 14, 16, 15 }, Ids(" <m> "));
            Assert.Equal(new long[] { 14, 11, 18, 11, 0, 15 }, Ids("ecde!"));
            Assert.Equal(new long[] { 14, 7, 15, 8, 14, 15 }, Ids("a<|endoftext|>b<|startoftext|>"));
        }
        finally { Directory.Delete(dir, true); }
    }

    [Fact]
    public void ClipMissingVocabNamesTheFile()
    {
        var dir = TinyClipFolder();
        try
        {
            File.Delete(Path.Combine(dir, "vocab.json"));
            var e = Assert.Throws<FileNotFoundException>(() => ClipTokenizer.FromFolder(dir));
            Assert.Contains("vocab.json", e.Message);
        }
        finally { Directory.Delete(dir, true); }
    }

    /// <summary>Writes a SentencePiece ModelProto (unigram, no BOS, no charsmap) with the given pieces.</summary>
    private static string TinySpmFolder((string Piece, float Score, int Type)[] pieces)
    {
        var dir = TempDir();
        using var ms = new MemoryStream();
        var output = new CodedOutputStream(ms);
        foreach (var (piece, score, type) in pieces)
        {
            using var pm = new MemoryStream();
            var po = new CodedOutputStream(pm);
            po.WriteTag(1, WireFormat.WireType.LengthDelimited); po.WriteString(piece);
            po.WriteTag(2, WireFormat.WireType.Fixed32); po.WriteFloat(score);
            po.WriteTag(3, WireFormat.WireType.Varint); po.WriteEnum(type);
            po.Flush();
            output.WriteTag(1, WireFormat.WireType.LengthDelimited); output.WriteBytes(ByteString.CopyFrom(pm.ToArray()));
        }
        using (var tm = new MemoryStream())
        {
            var to = new CodedOutputStream(tm);
            to.WriteTag(3, WireFormat.WireType.Varint); to.WriteEnum(1); // UNIGRAM
            to.WriteTag(40, WireFormat.WireType.Varint); to.WriteInt32(2);
            to.WriteTag(41, WireFormat.WireType.Varint); to.WriteInt32(-1);
            to.WriteTag(42, WireFormat.WireType.Varint); to.WriteInt32(1);
            to.WriteTag(43, WireFormat.WireType.Varint); to.WriteInt32(0);
            to.Flush();
            output.WriteTag(2, WireFormat.WireType.LengthDelimited); output.WriteBytes(ByteString.CopyFrom(tm.ToArray()));
        }
        output.Flush();
        File.WriteAllBytes(Path.Combine(dir, "spiece.model"), ms.ToArray());
        File.WriteAllText(Path.Combine(dir, "tokenizer_config.json"), "{\"extra_ids\": 2}");
        return dir;
    }

    [Fact]
    public void TinyUnigramPicksTheBestSegmentation()
    {
        var dir = TinySpmFolder([
            ("<pad>", 0, 3), ("</s>", 0, 3), ("<unk>", 0, 2),
            ("\u2581", -2, 1), ("a", -3, 1), ("b", -3, 1), ("c", -3, 1),
            ("ab", -5, 1),      // "ab" (-5) beats "a"+"b" (-6)
            ("\u2581abc", -20, 1), // worse than "▁"+"ab"+"c" (-10)
            ("bc", -7, 1),
        ]);
        try
        {
            var t5 = T5Tokenizer.FromFolder(dir);
            Assert.Equal(0, t5.PadId);
            Assert.Equal(1, t5.EosId);
            Assert.Equal(12, t5.VocabSize);
            Assert.Equal(new long[] { 3, 7, 6, 1, 0, 0 }, t5.Encode("abc", 6));
            // unknown run "xy" fuses into one <unk>; whitespace of any kind separates words
            Assert.Equal(new long[] { 3, 4, 3, 2, 3, 5, 1, 0 }, t5.Encode(" a\t\nxy  b ", 8));
            // sentinels count down from the top of the vocabulary
            Assert.Equal(new long[] { 11, 10, 1 }, t5.Encode("<extra_id_0><extra_id_1>", 3));
            // truncation keeps </s> last
            var ids = t5.Encode(string.Join(" ", Enumerable.Repeat("a", 200)));
            Assert.Equal(77, ids.Length);
            Assert.Equal(1, ids[76]);
            Assert.Equal(new long[] { 3, 4 }, ids[..2]);
            Assert.Equal(new long[] { 1, 0, 0 }, t5.Encode("", 3));
        }
        finally { Directory.Delete(dir, true); }
    }

    [Fact]
    public void T5MissingModelNamesTheFile()
    {
        var dir = TempDir();
        try
        {
            var e = Assert.Throws<FileNotFoundException>(() => T5Tokenizer.FromFolder(dir));
            Assert.Contains("spiece.model", e.Message);
            File.WriteAllBytes(Path.Combine(dir, "spiece.model"), Encoding.ASCII.GetBytes("not a model"));
            Assert.ThrowsAny<InvalidDataException>(() => T5Tokenizer.FromFolder(dir));
        }
        finally { Directory.Delete(dir, true); }
    }
}
