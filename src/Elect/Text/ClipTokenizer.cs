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
/// The specification is what the reference pipelines run: transformers 5's <c>CLIPTokenizer</c>, which is
/// backed by the Hugging Face <c>tokenizers</c> library (the "slow" and "fast" names are the same class):
/// <list type="number">
/// <item>Added tokens are split out of the raw text first (<see cref="AddedVocabulary"/>): the special
/// tokens bos/eos/unk/pad (and any added tokens of the folder) with their flags. A special token given as
/// a plain string is matched verbatim, before normalisation; so with SD3's tokenizer_2, whose pad token
/// is <c>!</c>, every literal "!" in a prompt is id 0 and "style?!" is "style", "?", "!".</item>
/// <item>Each remaining piece is normalised (<see cref="ClipTextNormalizer"/>): NFC, runs of whitespace to
/// one space, lower-case code point by code point (no HTML unescaping, no ftfy, no final-sigma rule).</item>
/// <item>Pre-tokenisation (<see cref="ClipPreTokenizer"/>): CLIP's word regex, then the byte-level
/// pre-tokeniser's GPT-2 regex inside every word (which splits a normalised <c>&lt;|startoftext|&gt;</c>,
/// e.g. from upper-case text, into "&lt;|", "startoftext", "|&gt;").</item>
/// <item>BPE per word (Microsoft.ML.Tokenizers' <see cref="BpeTokenizer"/>: byte-level input,
/// <c>&lt;/w&gt;</c> end-of-word suffix, merge-rank BPE, which reproduces CLIP's merges exactly).</item>
/// <item>Truncation to <see cref="MaxLength"/> - 2 tokens, BOS/EOS, padding with the pad id
/// (<c>padding="max_length", max_length=77, truncation=True</c>).</item>
/// </list>
/// Scanned by Unicode code point throughout: a .NET <see cref="System.Text.RegularExpressions.Regex"/>
/// classifies UTF-16 code units, so a letter outside the BMP would fall into the punctuation class; .NET's
/// own NFC is unavailable under InvariantGlobalization (see <see cref="ClipUnicode"/>).
/// </remarks>
public sealed class ClipTokenizer
{
    public const string StartOfText = "<|startoftext|>";
    public const string EndOfText = "<|endoftext|>";

    private readonly BpeTokenizer _bpe;
    private readonly AddedVocabulary _added;

    /// <summary>Length of every encoded row (model_max_length, 77 for CLIP).</summary>
    public int MaxLength { get; }
    public long BosId { get; }
    public long EosId { get; }
    public long PadId { get; }
    public string PadToken { get; }
    /// <summary>The tokens split out of the text before BPE (special tokens included).</summary>
    public IReadOnlyList<AddedToken> AddedTokens => _added.Tokens;

    private ClipTokenizer(BpeTokenizer bpe, AddedVocabulary added, int maxLength, long bos, long eos, long pad, string padToken)
    {
        _bpe = bpe;
        _added = added;
        MaxLength = maxLength;
        BosId = bos;
        EosId = eos;
        PadId = pad;
        PadToken = padToken;
    }

    /// <summary>
    /// Loads a transformers CLIPTokenizer folder: vocab.json, merges.txt and (optional)
    /// tokenizer_config.json / special_tokens_map.json / tokenizer.json for the special and added tokens
    /// and model_max_length.
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
        string padToken = config.Token("pad_token") ?? EndOfText;
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
                PreTokenizer = new ClipPreTokenizer(),
            });
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            throw new InvalidDataException($"CLIP tokenizer: cannot read {vocabPath} / {mergesPath}: {e.Message}", e);
        }

        // CLIPTokenizer's defaults for tokens the folder does not name
        var defaults = new[] { unkToken, bosToken, eosToken, padToken }.Select(t => (t, (AddedToken?)null));
        var tokens = AddedTokenLoader.Load(dir, config, t => bpe.Vocabulary.TryGetValue(t, out var id) ? id : null, bpe.Vocabulary.Count, defaults);
        var added = new AddedVocabulary(tokens, ClipTextNormalizer.Clean);

        long Id(string token, string role)
        {
            foreach (var t in tokens) if (t.Content == token) return t.Id;
            return bpe.Vocabulary.TryGetValue(token, out var id) ? id : throw new InvalidDataException($"CLIP tokenizer: {role} '{token}' is not in {vocabPath}");
        }
        return new ClipTokenizer(bpe, added, maxLength, Id(bosToken, "bos_token"), Id(eosToken, "eos_token"), Id(padToken, "pad_token"), padToken);
    }

    /// <summary>The token ids of <paramref name="text"/> without BOS/EOS, truncation or padding.</summary>
    public List<long> Tokenize(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        var ids = new List<long>();
        foreach (var (piece, token) in _added.Split(text))
        {
            if (token is not null) ids.Add(token.Id);
            else foreach (var id in _bpe.EncodeToIds(piece)) ids.Add(id);
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
/// The normaliser of transformers 5's CLIPTokenizer (a <c>tokenizers</c> Sequence): NFC, every run of
/// whitespace (<c>\s+</c>) replaced by one space, then <c>Lowercase</c>, which maps each code point on its
/// own by the full Unicode lower-case mapping (U+0130 to "i\u0307"; capital sigma always to U+03C3).
/// No HTML unescaping and no ftfy (that was the original OpenAI CLIP code, not the reference here).
/// </summary>
internal sealed class ClipTextNormalizer : Normalizer
{
    public override string Normalize(string original) => Clean(original);

    public override string Normalize(ReadOnlySpan<char> original) => Clean(original.ToString());

    public static string Clean(string text)
    {
        text = ClipUnicode.Nfc(text);
        var sb = new System.Text.StringBuilder(text.Length);
        bool inSpace = false;
        foreach (var rune in text.EnumerateRunes())
        {
            if (Rune.IsWhiteSpace(rune))
            {
                if (!inSpace) sb.Append(' ');
                inSpace = true;
                continue;
            }
            inSpace = false;
            sb.Append(rune.ToString());
        }
        return ClipUnicode.Lower(sb.ToString());
    }
}

/// <summary>
/// CLIP's word splitter, the regex
/// <c>&lt;\|startoftext\|&gt;|&lt;\|endoftext\|&gt;|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+</c>
/// (alternatives tried in order, whitespace dropped), evaluated on code points; then, inside every word,
/// the byte-level pre-tokeniser's GPT-2 regex (<c>'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|...</c>),
/// which only changes the two literal words: "&lt;|", "startoftext" / "endoftext", "|&gt;".
/// </summary>
internal sealed class ClipPreTokenizer : PreTokenizer
{
    private static readonly string[] Literals =
        [ClipTokenizer.StartOfText, ClipTokenizer.EndOfText, "'s", "'t", "'re", "'ve", "'m", "'ll", "'d"];
    private static readonly string[] Contractions = ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d"];

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
            if (literal != null) { SplitGpt2(text, i, literal.Length, words); i += literal.Length; continue; }

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

    /// <summary>The GPT-2 regex on a word without whitespace: contractions, else runs of one class (letters / numbers / other).</summary>
    private static void SplitGpt2(ReadOnlySpan<char> text, int offset, int length, List<(int, int)> words)
    {
        int i = offset, end = offset + length;
        while (i < end)
        {
            var rest = text[i..end];
            string? c = null;
            foreach (var k in Contractions)
                if (rest.StartsWith(k, StringComparison.Ordinal)) { c = k; break; }
            if (c != null) { words.Add((i, c.Length)); i += c.Length; continue; }
            var kind = Classify(rest, out int len);
            int j = i + len;
            while (j < end)
            {
                var next = Classify(text[j..end], out int nlen);
                if (next != kind) break;
                j += nlen;
            }
            words.Add((i, j - i));
            i = j;
        }
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

    /// <summary>The raw JSON of a special-token entry (string or AddedToken object), tokenizer_config.json first.</summary>
    public JsonElement? TokenElement(string key)
    {
        foreach (var source in new[] { _config, _specialMap })
            if (source is { } obj && obj.TryGetProperty(key, out var v) && v.ValueKind is JsonValueKind.String or JsonValueKind.Object)
                return v;
        return null;
    }

    /// <summary>The raw JSON items of a token list entry (e.g. additional_special_tokens), tokenizer_config.json first.</summary>
    public List<JsonElement> TokenElements(string key)
    {
        foreach (var source in new[] { _config, _specialMap })
            if (source is { } obj && obj.TryGetProperty(key, out var v) && v.ValueKind == JsonValueKind.Array)
                return v.EnumerateArray().ToList();
        return [];
    }

    /// <summary>The members of an object entry of tokenizer_config.json (e.g. added_tokens_decoder).</summary>
    public List<(string Key, JsonElement Value)> Objects(string key)
    {
        if (_config is { } obj && obj.TryGetProperty(key, out var v) && v.ValueKind == JsonValueKind.Object)
            return v.EnumerateObject().Select(p => (p.Name, p.Value)).ToList();
        return [];
    }

    /// <summary>A boolean entry of tokenizer_config.json; null when absent or not a boolean.</summary>
    public bool? Bool(string key) =>
        _config is { } obj && obj.TryGetProperty(key, out var v) && v.ValueKind is JsonValueKind.True or JsonValueKind.False ? v.GetBoolean() : null;

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
