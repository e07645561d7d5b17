using System.IO.Compression;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Elect.Text;
using Xunit;

namespace Elect.Tests;

/// <summary>
/// Tokenizer parity on a corpus of ~2,500 strings (Data/tokenizers/corpus.json): every string through every
/// tokenizer of both fixture families must give ids IDENTICAL to transformers (Data/tokenizers/goldens.json.gz,
/// written by scripts/goldens/make_tokenizer_goldens.py), both as the pipelines call them (padding="max_length",
/// max_length=77, truncation=True) and unpadded/untruncated, so that splitting and truncation bugs are told apart.
/// </summary>
public class TokenizerCorpusTests
{
    private static readonly string DataDir = Path.Combine(AppContext.BaseDirectory, "Data", "tokenizers");

    private sealed record Golden(string Folder, string? ConfigUpdate, string Class, long PadId, List<long[]> Padded, List<long[]> Unpadded);

    private static readonly Lazy<(List<string> Corpus, int MaxLength, Dictionary<string, Golden> Tokenizers)> Data = new(() =>
    {
        var corpus = JsonSerializer.Deserialize<List<string>>(File.ReadAllText(Path.Combine(DataDir, "corpus.json")))!;
        using var gz = new GZipStream(File.OpenRead(Path.Combine(DataDir, "goldens.json.gz")), CompressionMode.Decompress);
        using var doc = JsonDocument.Parse(gz);
        var root = doc.RootElement;
        var map = new Dictionary<string, Golden>();
        foreach (var t in root.GetProperty("tokenizers").EnumerateObject())
        {
            static List<long[]> Rows(JsonElement e) => e.EnumerateArray().Select(r => r.EnumerateArray().Select(x => x.GetInt64()).ToArray()).ToList();
            var update = t.Value.GetProperty("config_update");
            map[t.Name] = new Golden(t.Value.GetProperty("folder").GetString()!, update.ValueKind == JsonValueKind.Object ? update.GetRawText() : null,
                t.Value.GetProperty("class").GetString()!, t.Value.GetProperty("pad_id").GetInt64(),
                Rows(t.Value.GetProperty("padded")), Rows(t.Value.GetProperty("unpadded")));
        }
        return (corpus, root.GetProperty("max_length").GetInt32(), map);
    });

    [Fact]
    public void CorpusAndGoldensAreConsistent()
    {
        var (corpus, maxLength, tokenizers) = Data.Value;
        Assert.True(corpus.Count >= 2000, $"corpus has {corpus.Count} strings");
        Assert.Equal(77, maxLength);
        Assert.Equal(6, tokenizers.Count);
        foreach (var (name, g) in tokenizers)
        {
            Assert.Equal(corpus.Count, g.Padded.Count);
            Assert.Equal(corpus.Count, g.Unpadded.Count);
            Assert.All(g.Padded, r => Assert.True(r.Length <= maxLength, name));
        }
    }

    [SkippableTheory]
    [InlineData("ip2p-tiny/tokenizer")]
    [InlineData("ultraedit-tiny/tokenizer")]
    [InlineData("ultraedit-tiny/tokenizer_2")]
    [InlineData("ultraedit-tiny/tokenizer_3")]
    [InlineData("ultraedit-tiny/tokenizer_2+flags")]
    [InlineData("ultraedit-tiny/tokenizer_3+flags")]
    public void IdsMatchTransformers(string folder)
    {
        var root = Fixtures.Require();
        var (corpus, maxLength, tokenizers) = Data.Value;
        var golden = tokenizers[folder];
        var dir = Path.Combine(root, "models", golden.Folder);
        string? temp = null;
        if (golden.ConfigUpdate is { } update)
        {
            // a copy of the folder with the generator's extra added tokens merged into tokenizer_config.json
            temp = Path.Combine(Path.GetTempPath(), "elect-tokvar-" + Guid.NewGuid().ToString("N"));
            Directory.CreateDirectory(temp);
            foreach (var f in Directory.GetFiles(dir)) File.Copy(f, Path.Combine(temp, Path.GetFileName(f)));
            var configPath = Path.Combine(temp, "tokenizer_config.json");
            var config = JsonNode.Parse(File.ReadAllText(configPath))!.AsObject();
            foreach (var (k, v) in JsonNode.Parse(update)!.AsObject().ToList()) config[k] = v?.DeepClone();
            File.WriteAllText(configPath, config.ToJsonString());
            dir = temp;
        }
        try { Compare(folder, dir, golden, corpus, maxLength); }
        finally { if (temp != null) Directory.Delete(temp, true); }
    }

    private static void Compare(string folder, string dir, Golden golden, List<string> corpus, int maxLength)
    {
        Func<string, long[]> padded, unpadded;
        if (golden.Class.StartsWith("T5", StringComparison.Ordinal))
        {
            var t5 = T5Tokenizer.FromFolder(dir);
            Assert.Equal(golden.PadId, t5.PadId);
            padded = s => t5.Encode(s, maxLength);
            unpadded = s => [.. t5.Tokenize(s), t5.EosId];
        }
        else
        {
            var clip = ClipTokenizer.FromFolder(dir);
            Assert.Equal(golden.PadId, clip.PadId);
            Assert.Equal(maxLength, clip.MaxLength);
            padded = clip.Encode;
            unpadded = s => [clip.BosId, .. clip.Tokenize(s), clip.EosId];
        }

        var failures = new List<string>();
        int paddedFails = 0, unpaddedFails = 0;
        for (int i = 0; i < corpus.Count; i++)
        {
            var expectedPadded = golden.Padded[i].Concat(Enumerable.Repeat(golden.PadId, maxLength - golden.Padded[i].Length)).ToArray();
            var gotPadded = padded(corpus[i]);
            var gotUnpadded = unpadded(corpus[i]);
            bool p = expectedPadded.SequenceEqual(gotPadded), u = golden.Unpadded[i].SequenceEqual(gotUnpadded);
            if (!p) paddedFails++;
            if (!u) unpaddedFails++;
            if ((!p || !u) && failures.Count < 8)
                failures.Add($"#{i} {JsonSerializer.Serialize(corpus[i])}\n  unpadded expected [{string.Join(",", golden.Unpadded[i])}]\n" +
                             $"  unpadded got      [{string.Join(",", gotUnpadded)}]\n  padded   expected [{string.Join(",", expectedPadded)}]\n" +
                             $"  padded   got      [{string.Join(",", gotPadded)}]");
        }
        Assert.True(failures.Count == 0,
            $"{folder} ({golden.Class}): {unpaddedFails} unpadded and {paddedFails} padded mismatches of {corpus.Count} strings; first ones:\n" +
            string.Join("\n", failures));
    }
}
