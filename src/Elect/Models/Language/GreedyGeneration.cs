using TorchSharp;
using static TorchSharp.torch;

namespace Elect.Models.Language;

/// <summary>The settings of a greedy generation (MGIE: 96 new tokens, no repeated 3-grams).</summary>
/// <param name="MaxNewTokens">Stop after this many generated tokens.</param>
/// <param name="NoRepeatNgramSize">transformers' <c>no_repeat_ngram_size</c> (0: off).</param>
/// <param name="EosTokenIds">Generation stops after one of these (it is kept in the sequence).</param>
public sealed record GreedyOptions(int MaxNewTokens, int NoRepeatNgramSize, IReadOnlyList<long> EosTokenIds);

/// <summary>A finished generation.</summary>
/// <param name="Sequence">The prompt ids, then the generated ids (<c>out['sequences'][0]</c>).</param>
/// <param name="PromptLength">How many of <paramref name="Sequence"/> are the prompt.</param>
/// <param name="LastHiddenStates">[len(Sequence) - 1, hidden] in the model dtype, on its device:
/// <c>torch.cat([x[-1] for x in out['hidden_states']], 1)[0]</c>, the normed last-layer states of the prompt pass and
/// of every generation step (the last generated token is never fed back).</param>
public sealed record GreedyResult(long[] Sequence, int PromptLength, Tensor LastHiddenStates) : IDisposable
{
    public void Dispose() => LastHiddenStates.Dispose();
}

/// <summary>
/// transformers' <c>generate(do_sample=False, num_beams=1, max_new_tokens=N, no_repeat_ngram_size=n,
/// return_dict_in_generate=True, output_hidden_states=True)</c> for one sequence: a prompt pass over the input
/// embeddings (LLaVA's spliced image + text), then one cached step per token; each step takes the last position's
/// logits in float32, applies <c>NoRepeatNGramLogitsProcessor</c> over the WHOLE sequence (prompt included: a token
/// that would repeat an n-gram already present gets -inf), and picks the first maximum (<c>argmax</c>). It stops after an
/// eos id (kept) or after <c>max_new_tokens</c>.
/// </summary>
public static class GreedyGeneration
{
    public static GreedyResult Generate(LlamaForCausalLM model, IReadOnlyList<long> promptIds, Tensor promptEmbeds, GreedyOptions options)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(promptIds);
        ArgumentNullException.ThrowIfNull(options);
        if (promptEmbeds.dim() != 3 || promptEmbeds.shape[0] != 1 || promptEmbeds.shape[1] != promptIds.Count)
            throw new ArgumentException($"prompt embeddings must be [1, {promptIds.Count}, hidden], got [{string.Join(", ", promptEmbeds.shape)}]");
        if (options.MaxNewTokens < 1) throw new ArgumentOutOfRangeException(nameof(options), "max_new_tokens must be at least 1");
        using var _ = torch.no_grad();
        var seq = new List<long>(promptIds);
        var rows = new List<Tensor>();
        using var cache = new LlamaKvCache(model.Config.NumHiddenLayers);
        try
        {
            var input = promptEmbeds;
            for (int step = 0; ; step++)
            {
                float[] scores;
                using (var scope = torch.NewDisposeScope())
                {
                    var (hidden, logits) = model.Forward(input, cache, lastLogitsOnly: true);
                    rows.Add(hidden[0].MoveToOuterDisposeScope());
                    scores = logits[0, -1].to(ScalarType.Float32).cpu().data<float>().ToArray();
                }
                if (!ReferenceEquals(input, promptEmbeds)) input.Dispose();
                foreach (var banned in BannedTokens(seq, options.NoRepeatNgramSize))
                    if (banned >= 0 && banned < scores.Length) scores[banned] = float.NegativeInfinity;
                long next = ArgMax(scores);
                seq.Add(next);
                if (options.EosTokenIds.Contains(next) || step + 1 >= options.MaxNewTokens) break;
                using var ids = torch.tensor(new[] { next }, [1, 1], ScalarType.Int64);
                input = model.Embed(ids);
            }
            var all = torch.cat(rows, 0);
            return new GreedyResult(seq.ToArray(), promptIds.Count, all);
        }
        finally
        {
            foreach (var r in rows) r.Dispose();
        }
    }

    /// <summary>torch.argmax over a row: the first maximum (a NaN counts as the maximum, as in PyTorch).</summary>
    public static long ArgMax(float[] scores)
    {
        int best = 0;
        for (int i = 0; i < scores.Length; i++)
        {
            if (float.IsNaN(scores[i])) return i;
            if (scores[i] > scores[best]) best = i;
        }
        return best;
    }

    /// <summary>
    /// <c>NoRepeatNGramLogitsProcessor</c>: the tokens that would complete an n-gram already in <paramref name="sequence"/>
    /// (every n-gram of the whole sequence; none while the sequence is shorter than n - 1).
    /// </summary>
    public static IEnumerable<long> BannedTokens(IReadOnlyList<long> sequence, int n)
    {
        if (n <= 0) yield break;
        int len = sequence.Count;
        if (len + 1 < n) yield break;
        int start = len + 1 - n;   // the last n - 1 tokens are the prefix
        for (int i = 0; i + n <= len; i++)
        {
            bool match = true;
            for (int j = 0; j < n - 1 && match; j++) match = sequence[i + j] == sequence[start + j];
            if (match) yield return sequence[i + n - 1];
        }
    }
}
