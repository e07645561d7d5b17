using System.Text;
using System.Text.Json;
using Microsoft.ML.Tokenizers;
using TorchSharp;

namespace Elect.Text;

/// <summary>
/// CLIP's byte-level BPE tokenizer (vocab.json + merges.txt), producing fixed-length id rows
/// <c>[BOS, tokens..., EOS, pad...]</c> as the diffusers pipelines feed the CLIP text encoders.
/// </summary>
/// <remarks>
/// The BPE model itself is Microsoft.ML.Tokenizers' <see cref="BpeTokenizer"/> (byte-level input,
/// <c>&lt;/w&gt;</c> end-of-word suffix, merge-rank BPE): it reproduces CLIP's merges exactly. What
/// the library has no equivalent for is supplied here and plugged into it:
/// <list type="bullet">
/// <item><see cref="ClipTextNormalizer"/>: CLIP's text cleaning (HTML unescape twice, NFC,
/// whitespace collapse, strip, full Unicode lower-case). The library ships no such normaliser, and
/// .NET's own NFC is unavailable under the solution's InvariantGlobalization (see <see cref="ClipUnicode"/>).</item>
/// <item><see cref="ClipPreTokenizer"/>: CLIP's word regex, scanned by Unicode code point. A .NET
/// <see cref="System.Text.RegularExpressions.Regex"/> classifies UTF-16 code units, so a letter or digit
/// outside the BMP (e.g. U+20000, a CJK ideograph) would fall into the punctuation class.</item>
/// <item>Special tokens, truncation and padding are applied here: <c>&lt;|startoftext|&gt;</c> and
/// <c>&lt;|endoftext|&gt;</c> are recognised in the raw text before normalisation (as transformers
/// does); the pad token is used only for padding, so a pad of <c>!</c> does not turn a literal "!"
/// in a prompt into id 0 (transformers registers the pad as a special token and does; CLIP's own
/// tokenizer gives "!&lt;/w&gt;", id 256).</item>
/// </list>
/// </remarks>
public sealed class ClipTokenizer
{
    public const string StartOfText = "<|startoftext|>";
    public const string EndOfText = "<|endoftext|>";

    private readonly BpeTokenizer _bpe;
    private readonly (string Text, long Id)[] _specials;

    /// <summary>Length of every encoded row (model_max_length, 77 for CLIP).</summary>
    public int MaxLength { get; }
    public long BosId { get; }
    public long EosId { get; }
    public long PadId { get; }
    public string PadToken { get; }

    private ClipTokenizer(BpeTokenizer bpe, int maxLength, long bos, long eos, long pad, string padToken)
    {
        _bpe = bpe;
        MaxLength = maxLength;
        BosId = bos;
        EosId = eos;
        PadId = pad;
        PadToken = padToken;
        _specials = [(StartOfText, bos), (EndOfText, eos)];
    }

    /// <summary>
    /// Loads a transformers CLIPTokenizer folder: vocab.json, merges.txt and (optional)
    /// tokenizer_config.json / special_tokens_map.json for bos/eos/pad tokens and model_max_length.
    /// </summary>
    public static ClipTokenizer FromFolder(string dir)
    {
        if (!Directory.Exists(dir)) throw new DirectoryNotFoundException($"CLIP tokenizer folder not found: {dir}");
        var vocabPath = Path.Combine(dir, "vocab.json");
        var mergesPath = Path.Combine(dir, "merges.txt");
        if (!File.Exists(vocabPath)) throw new FileNotFoundException($"CLIP tokenizer: missing vocab.json in {dir}", vocabPath);
        if (!File.Exists(mergesPath)) throw new FileNotFoundException($"CLIP tokenizer: missing merges.txt in {dir}", mergesPath);

        var config = ClipTokenizerConfig.Read(dir);
        string bosToken = config.Token("bos_token") ?? StartOfText;
        string eosToken = config.Token("eos_token") ?? EndOfText;
        string padToken = config.Token("pad_token") ?? eosToken;
        string unkToken = config.Token("unk_token") ?? EndOfText;
        int maxLength = config.MaxLength(77);

        BpeTokenizer bpe;
        try
        {
            bpe = BpeTokenizer.Create(new BpeOptions(vocabPath, mergesPath)
            {
                ByteLevel = true,
                EndOfWordSuffix = "</w>",
                UnknownToken = unkToken,
                Normalizer = new ClipTextNormalizer(),
                PreTokenizer = new ClipPreTokenizer(),
            });
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            throw new InvalidDataException($"CLIP tokenizer: cannot read {vocabPath} / {mergesPath}: {e.Message}", e);
        }

        long Id(string token, string role) =>
            bpe.Vocabulary.TryGetValue(token, out var id) ? id : throw new InvalidDataException($"CLIP tokenizer: {role} '{token}' is not in {vocabPath}");
        return new ClipTokenizer(bpe, maxLength, Id(bosToken, "bos_token"), Id(eosToken, "eos_token"), Id(padToken, "pad_token"), padToken);
    }

    /// <summary>The token ids of <paramref name="text"/> without BOS/EOS, truncation or padding.</summary>
    public List<long> Tokenize(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        var ids = new List<long>();
        int start = 0;
        while (start <= text.Length)
        {
            // next special token in the raw text (leftmost; the longer one on a tie)
            int at = -1;
            (string Text, long Id) found = ("", 0);
            foreach (var special in _specials)
            {
                int i = text.IndexOf(special.Text, start, StringComparison.Ordinal);
                if (i >= 0 && (at < 0 || i < at || (i == at && special.Text.Length > found.Text.Length))) { at = i; found = special; }
            }
            int end = at < 0 ? text.Length : at;
            if (end > start)
                foreach (var id in _bpe.EncodeToIds(text.Substring(start, end - start))) ids.Add(id);
            if (at < 0) break;
            ids.Add(found.Id);
            start = at + found.Text.Length;
        }
        return ids;
    }

    /// <summary><c>[BOS, tokens..., EOS, pad...]</c>, exactly <see cref="MaxLength"/> ids; tokens are truncated so EOS stays last.</summary>
    public long[] Encode(string text)
    {
        var tokens = Tokenize(text);
        var row = new long[MaxLength];
        Array.Fill(row, PadId);
        int n = Math.Min(tokens.Count, MaxLength - 2);
        row[0] = BosId;
        for (int i = 0; i < n; i++) row[1 + i] = tokens[i];
        row[1 + n] = EosId;
        return row;
    }

    /// <summary>int64 [B, MaxLength] on the CPU.</summary>
    public torch.Tensor EncodeBatch(IReadOnlyList<string> texts)
    {
        ArgumentNullException.ThrowIfNull(texts);
        var data = new long[texts.Count * MaxLength];
        for (int b = 0; b < texts.Count; b++) Encode(texts[b]).CopyTo(data, b * MaxLength);
        return torch.tensor(data, [texts.Count, MaxLength], torch.int64);
    }
}

/// <summary>
/// CLIP's text cleaning as its reference tokenizer applies it (ftfy aside): HTML entities unescaped
/// twice, NFC, runs of whitespace collapsed to one space, leading/trailing space stripped, lower-cased.
/// HTML decoding is <see cref="System.Net.WebUtility.HtmlDecode(string)"/>, which knows the HTML 4
/// named entities and numeric references; Python's html.unescape also knows the HTML 5 names and a
/// few semicolon-less forms.
/// </summary>
internal sealed class ClipTextNormalizer : Normalizer
{
    public override string Normalize(string original) => Clean(original);

    public override string Normalize(ReadOnlySpan<char> original) => Clean(original.ToString());

    public static string Clean(string text)
    {
        if (text.Contains('&'))
            text = System.Net.WebUtility.HtmlDecode(System.Net.WebUtility.HtmlDecode(text));
        text = ClipUnicode.Nfc(text);
        var sb = new System.Text.StringBuilder(text.Length);
        bool pendingSpace = false;
        foreach (var rune in text.EnumerateRunes())
        {
            if (Rune.IsWhiteSpace(rune)) { pendingSpace = sb.Length > 0; continue; }
            if (pendingSpace) { sb.Append(' '); pendingSpace = false; }
            sb.Append(rune.ToString());
        }
        return ClipUnicode.Lower(sb.ToString());
    }
}

/// <summary>
/// CLIP's word splitter, the regex
/// <c>&lt;\|startoftext\|&gt;|&lt;\|endoftext\|&gt;|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+</c>
/// (alternatives tried in order, whitespace dropped), evaluated on code points.
/// </summary>
internal sealed class ClipPreTokenizer : PreTokenizer
{
    private static readonly string[] Literals =
        [ClipTokenizer.StartOfText, ClipTokenizer.EndOfText, "'s", "'t", "'re", "'ve", "'m", "'ll", "'d"];

    public override IEnumerable<(int Offset, int Length)> PreTokenize(string text) =>
        text is null ? [] : PreTokenize(text.AsSpan());

    public override IEnumerable<(int Offset, int Length)> PreTokenize(ReadOnlySpan<char> text) => Split(text);

    public static List<(int Offset, int Length)> Split(ReadOnlySpan<char> text)
    {
        var words = new List<(int, int)>();
        int i = 0;
        while (i < text.Length)
        {
            var rest = text[i..];
            string? literal = null;
            foreach (var l in Literals)
                if (rest.StartsWith(l, StringComparison.Ordinal)) { literal = l; break; }
            if (literal != null) { words.Add((i, literal.Length)); i += literal.Length; continue; }

            var kind = Classify(rest, out int len);
            if (kind == CharKind.Space) { i += len; continue; }
            if (kind == CharKind.Number) { words.Add((i, len)); i += len; continue; }
            int j = i + len;
            while (j < text.Length)
            {
                var next = Classify(text[j..], out int nlen);
                if (next != kind) break;
                j += nlen;
            }
            words.Add((i, j - i));
            i = j;
        }
        return words;
    }

    private enum CharKind { Letter, Number, Space, Other }

    private static CharKind Classify(ReadOnlySpan<char> s, out int length)
    {
        if (Rune.DecodeFromUtf16(s, out var rune, out length) != System.Buffers.OperationStatus.Done)
            return CharKind.Other; // lone surrogate: neither \s, \p{L} nor \p{N}
        if (Rune.IsWhiteSpace(rune)) return CharKind.Space;
        if (Rune.IsLetter(rune)) return CharKind.Letter;
        if (Rune.IsNumber(rune)) return CharKind.Number;
        return CharKind.Other;
    }
}

/// <summary>tokenizer_config.json, with special_tokens_map.json as a fallback for token strings.</summary>
internal sealed class ClipTokenizerConfig
{
    private readonly JsonElement? _config, _specialMap;

    private ClipTokenizerConfig(JsonElement? config, JsonElement? specialMap)
    {
        _config = config;
        _specialMap = specialMap;
    }

    public static ClipTokenizerConfig Read(string dir) =>
        new(ReadJson(Path.Combine(dir, "tokenizer_config.json")), ReadJson(Path.Combine(dir, "special_tokens_map.json")));

    private static JsonElement? ReadJson(string path)
    {
        if (!File.Exists(path)) return null;
        try
        {
            using var doc = JsonDocument.Parse(File.ReadAllBytes(path), new JsonDocumentOptions { AllowTrailingCommas = true, CommentHandling = JsonCommentHandling.Skip });
            if (doc.RootElement.ValueKind != JsonValueKind.Object) throw new InvalidDataException($"{path}: expected a JSON object");
            return doc.RootElement.Clone();
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{path}: invalid JSON: {e.Message}", e);
        }
    }

    /// <summary>A special token given as a string or as an AddedToken object (<c>{"content": ...}</c>).</summary>
    public string? Token(string key)
    {
        foreach (var source in new[] { _config, _specialMap })
        {
            if (source is not { } obj || !obj.TryGetProperty(key, out var v)) continue;
            if (v.ValueKind == JsonValueKind.String) return v.GetString();
            if (v.ValueKind == JsonValueKind.Object && v.TryGetProperty("content", out var c) && c.ValueKind == JsonValueKind.String) return c.GetString();
        }
        return null;
    }

    /// <summary>model_max_length, or <paramref name="fallback"/> when absent or a "very large" placeholder.</summary>
    public int MaxLength(int fallback)
    {
        if (_config is { } obj && obj.TryGetProperty("model_max_length", out var v) && v.ValueKind == JsonValueKind.Number
            && v.TryGetDouble(out var d) && d >= 2 && d <= 1_000_000)
            return (int)d;
        return fallback;
    }

    /// <summary>A list of tokens (strings or AddedToken objects), e.g. additional_special_tokens.</summary>
    public List<string> TokenList(string key)
    {
        var list = new List<string>();
        foreach (var source in new[] { _config, _specialMap })
        {
            if (source is not { } obj || !obj.TryGetProperty(key, out var v) || v.ValueKind != JsonValueKind.Array) continue;
            foreach (var item in v.EnumerateArray())
            {
                if (item.ValueKind == JsonValueKind.String) list.Add(item.GetString()!);
                else if (item.ValueKind == JsonValueKind.Object && item.TryGetProperty("content", out var c) && c.ValueKind == JsonValueKind.String) list.Add(c.GetString()!);
            }
            return list;
        }
        return list;
    }

    public int? Int(string key) =>
        _config is { } obj && obj.TryGetProperty(key, out var v) && v.ValueKind == JsonValueKind.Number && v.TryGetInt32(out var i) ? i : null;

    public int Int(string key, int fallback) =>
        _config is { } obj && obj.TryGetProperty(key, out var v) && v.ValueKind == JsonValueKind.Number && v.TryGetInt32(out var i) ? i : fallback;
}
