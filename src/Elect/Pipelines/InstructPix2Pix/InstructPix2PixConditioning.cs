using static TorchSharp.torch;

namespace Elect.Pipelines.InstructPix2Pix;

/// <summary>
/// InstructPix2Pix's conditioning (diffusers' StableDiffusionInstructPix2PixPipeline): branches
/// [instruction + image, empty prompt + image, empty prompt + zero image], guidance
/// <c>uncond + g_t (text - image) + g_i (image - uncond)</c>. UltraEdit uses the same layout and formula.
/// </summary>
public class InstructPix2PixConditioning : ThreeBranchConditioning
{
    /// <param name="imageLatents">Image-conditioning latents [1, C_img, h, w] (model dtype).</param>
    /// <param name="instruction">The instruction's prompt embeddings [1, L, D].</param>
    /// <param name="empty">The empty prompt's [1, L, D].</param>
    public InstructPix2PixConditioning(Tensor imageLatents, Tensor instruction, Tensor empty) : base(imageLatents, instruction, empty) { }

    protected override bool ThirdBranchReadsInstruction => false;

    protected override Tensor Combine(Tensor text, Tensor image, Tensor uncond, float gText, float gImage) =>
        uncond + gText * (text - image) + gImage * (image - uncond);
}
