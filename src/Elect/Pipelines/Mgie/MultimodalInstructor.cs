using Elect.Imaging;
using static TorchSharp.torch;

namespace Elect.Pipelines.Mgie;

/// <summary>
/// What MGIE's multimodal LLM (LLaVA-7B + MGIE's fine-tuned token embeddings) hands the editing side for one edit:
/// the last-layer hidden states MGIE selects around its eight <c>[IMG0..7]</c> tokens, the expressive instruction
/// it wrote, and the generated token ids (for reports and parity tests).
/// </summary>
/// <param name="ImageTokenStates">[8, hidden] float32 on the model's device: <c>hid[p:p+8]</c> with MGIE's rule
/// <c>p = min(index([IMG0]) - 1 if [IMG0] was generated else len(hid) - 9, len(hid) - 9)</c> over the concatenated
/// last-layer hidden states of the prompt and every generation step.</param>
/// <param name="ExpressiveInstruction">MGIE's <c>remove_alter(tokenizer.decode(sequence))</c>.</param>
/// <param name="SequenceIds">The whole sequence as the reference's <c>out['sequences'][0]</c>: prompt ids, then
/// the generated ids.</param>
/// <param name="PromptLength">How many of <paramref name="SequenceIds"/> are the prompt.</param>
public sealed record InstructorOutput(Tensor ImageTokenStates, string ExpressiveInstruction, long[] SequenceIds, int PromptLength)
    : IDisposable
{
    public void Dispose() => ImageTokenStates.Dispose();
}

/// <summary>
/// MGIE's multimodal LLM: reads the image and the instruction, generates the expressive instruction greedily
/// (max 96 new tokens, no repeated 3-grams, vicuna_v1_1 template) and returns the [IMG] hidden states.
/// Runs once per edit, before the candidates are denoised.
/// </summary>
public interface IMultimodalInstructor : IDisposable
{
    /// <summary>The LLM's hidden size (4096 for LLaVA-7B): the width of <see cref="InstructorOutput.ImageTokenStates"/>.</summary>
    int HiddenSize { get; }

    /// <summary>Runs the LLM on <paramref name="image"/> (any size; preprocessed as CLIPImageProcessor) and <paramref name="instruction"/>.</summary>
    InstructorOutput Instruct(RgbImage image, string instruction);
}
