using System.Text.Json;
using Elect.Text;
using Xunit;

namespace Elect.Tests;

/// <summary>
/// MGIE's multimodal LLM (LLaVA-7B + MGIE's [IMG] tokens) against the reference goldens of
/// scripts/goldens/mgie.py (ELECT's mgie_module.py path over transformers 5.12) on the committed tiny fixture
/// (Data/mgie-tiny). Everything here needs only committed data.
/// </summary>
public class MgieLlavaTests
{
    internal static string Dir(params string[] parts) => Repo.Data(["mgie-tiny", .. parts]);

    /// <summary>The tokenizer as MGIE_module.__init__ leaves it: the folder, [IMG0..7], then the image tokens again.</summary>
    internal static LlamaTokenizer MgieTokenizer()
    {
        var t = LlamaTokenizer.FromFolder(Dir("LLaVA-7B-v1"));
        t.AddTokens(Enumerable.Range(0, 8).Select(i => $"[IMG{i}]"), specialTokens: true);
        t.AddTokens(["<im_patch>"], specialTokens: true);
        t.AddTokens(["<im_start>", "<im_end>"], specialTokens: true);
        return t;
    }

    [Fact]
    public void Tokenizer_ids_and_decode_equal_transformers_on_the_corpus()
    {
        var tok = MgieTokenizer();
        using var doc = JsonDocument.Parse(File.ReadAllBytes(Repo.Data("mgie-tiny-tokenizer.json")));
        int n = 0, bad = 0;
        var failures = new List<string>();
        foreach (var e in doc.RootElement.GetProperty("encode").EnumerateArray())
        {
            var text = e.GetProperty("text").GetString()!;
            var want = e.GetProperty("ids").EnumerateArray().Select(x => x.GetInt64()).ToArray();
            var got = tok.Encode(text).ToArray();
            n++;
            if (!got.SequenceEqual(want))
            {
                bad++;
                if (failures.Count < 5) failures.Add($"{JsonSerializer.Serialize(text)}: want [{string.Join(",", want)}] got [{string.Join(",", got)}]");
            }
        }
        foreach (var e in doc.RootElement.GetProperty("decode").EnumerateArray())
        {
            var ids = e.GetProperty("ids").EnumerateArray().Select(x => x.GetInt64()).ToArray();
            var want = e.GetProperty("text").GetString()!;
            var got = tok.Decode(ids);
            n++;
            if (got != want)
            {
                bad++;
                if (failures.Count < 10) failures.Add($"decode [{string.Join(",", ids)}]: want {JsonSerializer.Serialize(want)} got {JsonSerializer.Serialize(got)}");
            }
        }
        Assert.True(n > 400, $"only {n} cases");
        Assert.True(bad == 0, $"{bad} of {n} differ:\n" + string.Join("\n", failures));
        Assert.Equal(1011, tok.Count);
        Assert.Equal(1003, tok.TokenId("[IMG0]"));
        Assert.Equal(1000, tok.TokenId("<im_patch>"));
    }
}
